// The padded-batch extension of the executor contract (option.rolling_batch=scheduler, spec §4.3): the
// plan is still a SchedulerOutput, plus the sub-batch layout of the step. Each sub-batch owns one
// contiguous KV region of rows x capacity token slots, every row left-padded so all rows end on the
// same column. Invariant: every running request the executor knows is in exactly one decode sub-batch
// or one prefill sub-batch; a region whose batchId is in neither is freed after the step's repacks.

export interface PaddedSubBatch {
  /** Stable while the sub-batch keeps its rows; a new id means "build this region now". */
  batchId: number;
  /** Live rows, longest first. For a batchId the executor holds, a subset of its rows (the rest finished). */
  reqIds: string[];
  /**
   * Token columns reserved per row: the longest row's KV length when built plus the most tokens any row
   * may still feed, so a sub-batch never outgrows its region.
   */
  capacity: number;
}

export interface PaddedLayout {
  /**
   * Sub-batches decoded this step, one forward call each, each row feeding its last sampled token.
   * An unknown batchId is built first by repacking its rows out of the executor's current regions: a
   * merge (rows of several regions), a split, or a trim (dropping finished rows and the padding only
   * they needed).
   */
  decode: PaddedSubBatch[];
  /**
   * New requests (all in scheduledNewReqs), prefilled as their own left-padded sub-batches, one forward
   * call each; each row samples its first token. They are merged into decode sub-batches in a later step.
   */
  prefill: PaddedSubBatch[];
}
