# Step plans built the way the engine's scheduler builds them, for the executor's tests and the GPU check
# scripts that play Node: KV blocks handed out from a free list (shuffled with a seed, else in order), each
# request's computed count advanced as its plan is built (so a plan can be sent before the previous one's
# reply is back, as the engine keeps two steps in flight), its known tokens (prompt, then the samples
# recorded from replies), and resumed requests re-sent with all their tokens and fresh blocks.
import random


class PlanBuilder:
    def __init__(self, num_blocks: int, block_size: int, seed=None):
        self.free = list(range(num_blocks))
        if seed is None:
            self.free.reverse()  # pop() hands out 0, 1, 2, ...
        else:
            random.Random(seed).shuffle(self.free)
        self.bs, self.reqs, self.step = block_size, {}, 0

    def blocks_for(self, rid: str, upto: int) -> list:
        """Blocks request rid needs beyond those it holds to hold `upto` tokens (taken from the free list)."""
        r = self.reqs[rid]
        new = [self.free.pop() for _ in range(max(0, (upto + self.bs - 1) // self.bs - len(r["blocks"])))]
        r["blocks"] += new
        return new

    def plan(self, new=(), cached=(), finished=(), preempted=()) -> dict:
        """new: (request id, prompt ids, tokens to compute now, sampling settings); cached: (request id, tokens to
        compute now[, resumed from preemption])."""
        self.step += 1
        p = {"stepId": self.step, "scheduledNewReqs": [], "scheduledCachedReqs": [], "numScheduledTokens": {},
             "totalNumScheduledTokens": 0, "finishedReqIds": list(finished), "preemptedReqIds": list(preempted)}
        for rid, prompt, n, s in new:
            self.reqs[rid] = {"blocks": [], "computed": 0, "tokens": list(prompt), "prompt_len": len(prompt)}
            self.blocks_for(rid, n)
            p["scheduledNewReqs"].append({"reqId": rid, "promptTokenIds": list(prompt), "sampling": s,
                                          "blockIds": list(self.reqs[rid]["blocks"]), "numComputedTokens": 0})
            p["numScheduledTokens"][rid] = n
        for rid, n, *rest in cached:
            r = self.reqs[rid]
            resumed = bool(rest and rest[0])
            if resumed:
                r["blocks"], r["computed"] = [], 0
            new_blocks = self.blocks_for(rid, r["computed"] + n)
            d = {"reqId": rid, "newBlockIds": list(r["blocks"]) if resumed else new_blocks,
                 "numComputedTokens": r["computed"], "resumedFromPreemption": resumed}
            if resumed:
                d["allTokenIds"] = list(r["tokens"])
            p["scheduledCachedReqs"].append(d)
            p["numScheduledTokens"][rid] = n
        for rid, n in p["numScheduledTokens"].items():
            self.reqs[rid]["computed"] += n
        p["totalNumScheduledTokens"] = sum(p["numScheduledTokens"].values())
        return p

    def record(self, out: dict) -> None:
        """The sampled tokens of a step's reply join their requests' known tokens."""
        for rid, toks in out["sampledTokenIds"].items():
            self.reqs[rid]["tokens"] += toks
