"""PairList: the ordered (key, value) list behind Input/Output content, with repeatable keys.

Same surface as djl_python's PairList so handlers that walk content keep working. Keys may be None
(an Output item added without a key); lookups by key return the first match.
"""


class PairList:
    def __init__(self, keys=None, values=None, pair_list=None):
        if pair_list is not None:
            self.keys = [k for k, _ in pair_list]
            self.values = [v for _, v in pair_list]
        else:
            self.keys = list(keys or [])
            self.values = list(values or [])
        if len(self.keys) != len(self.values):
            raise ValueError(f"PairList needs as many keys ({len(self.keys)}) as values ({len(self.values)})")

    def add(self, key=None, value=None):
        self.keys.append(key)
        self.values.append(value)

    def size(self) -> int:
        return len(self.keys)

    def is_empty(self) -> bool:
        return not self.keys

    def key_at(self, index):
        return self.keys[index]

    def value_at(self, index):
        return self.values[index]

    def get_keys(self):
        return self.keys

    def get_values(self):
        return self.values

    def get(self, key):
        for k, v in zip(self.keys, self.values):
            if k == key:
                return v
        return None

    def items(self):
        return list(zip(self.keys, self.values))

    def __len__(self):
        return len(self.keys)

    def __iter__(self):
        return iter(zip(self.keys, self.values))
