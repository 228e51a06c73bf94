"""Input: one request (or one dynamic batch) as a handler sees it — the djl_python API of spec §5.5.

Properties are a plain dict (HTTP headers, requestId, or the model options on the init request);
lookups through get_property are case-insensitive. Content is a PairList of (key, bytes).
A batched Input carries `batch_size` plus `batch_NNN.`-prefixed properties and content (spec §5.6).
"""

import io
import json
import re

from .pair_list import PairList

_BATCH_KEY = re.compile(r"^batch_(\d+)\.(.*)$", re.DOTALL)


class Input:
    def __init__(self):
        self.function_name = None
        self.properties = {}
        self.content = PairList()

    @classmethod
    def from_frame(cls, properties: dict, content) -> "Input":
        inp = cls()
        inp.properties = dict(properties)
        for key, value in content:
            inp.content.add(key, bytearray(value))
        inp.function_name = inp.properties.get("handler")
        return inp

    def __str__(self):
        return f"properties: {self.properties}, content keys: {self.content.get_keys()}"

    # --- batches -------------------------------------------------------------------------------
    def is_batch(self) -> bool:
        return "batch_size" in self.properties

    def get_batch_size(self) -> int:
        return int(self.properties.get("batch_size", "1"))

    def get_batches(self) -> list:
        """Splits a dynamic batch into one Input per request (index taken from the key prefix)."""
        if not self.is_batch():
            return [self]
        size = self.get_batch_size()
        batch = [Input() for _ in range(size)]
        for key, value in self.properties.items():
            m = _BATCH_KEY.match(key)
            if m and int(m.group(1)) < size:
                batch[int(m.group(1))].properties[m.group(2)] = value
        for key, value in self.content:
            m = _BATCH_KEY.match(key or "")
            if not m or int(m.group(1)) >= size:
                raise ValueError(f"batch content key '{key}' has no valid batch_NNN. prefix for batch_size {size}")
            batch[int(m.group(1))].content.add(m.group(2), value)
        for item in batch:
            item.function_name = self.function_name
        return batch

    # --- properties ----------------------------------------------------------------------------
    def get_function_name(self):
        return self.function_name

    def get_properties(self) -> dict:
        return self.properties

    def get_property(self, key: str):
        lowered = key.lower()
        return next((v for k, v in self.properties.items() if k.lower() == lowered), None)

    def add_property(self, key, value):
        self.properties[key] = value
        return self

    # --- content -------------------------------------------------------------------------------
    def get_content(self) -> PairList:
        return self.content

    def contains_key(self, key) -> bool:
        return self.content.get(key) is not None

    def is_empty(self) -> bool:
        return self.content.is_empty()

    def get_data(self, key=None):
        """Decodes by the request's content-type, like DJL: json, text, image, npz, ndlist, else bytes."""
        content_type = self.get_property("content-type")
        if content_type is None:
            return None if self.content.is_empty() else self.get_as_bytes(key)
        ct = content_type.split(";")[0].strip().lower()
        if ct == "tensor/ndlist":
            return self.get_as_numpy(key)
        if ct == "tensor/npz":
            return self.get_as_npz(key)
        if ct.startswith("application/json"):
            return self.get_as_json(key)
        if ct == "text/csv":
            return self.get_as_csv(key)
        if ct.startswith("text/"):
            return self.get_as_string(key)
        if ct.startswith("image/"):
            return self.get_as_image(key)
        return None if self.content.is_empty() else self.get_as_bytes(key)

    def get_as_bytes(self, key=None):
        """The item under `key`; without a key, the item named `data`, else the first item."""
        if self.content.is_empty():
            return None
        if key:
            value = self.content.get(key)
            if value is None:
                raise KeyError(f"requested data for key:{key} is not found!")
            return value
        value = self.content.get("data")
        return value if value is not None else self.content.value_at(0)

    def get_as_string(self, key=None) -> str:
        data = self.get_as_bytes(key=key)
        if data is None:
            raise ValueError("the request has no content to read as a string")
        return bytes(data).decode("utf-8")

    def get_as_json(self, key=None):
        return json.loads(self.get_as_string(key=key))

    def get_as_csv(self, key=None) -> list:
        import csv

        return list(csv.DictReader(io.StringIO(self.get_as_string(key=key))))

    def get_as_image(self, key=None):
        try:
            from PIL import Image
        except ImportError as e:
            raise ImportError("get_as_image needs Pillow (pip install pillow) in the worker's Python") from e
        return Image.open(io.BytesIO(self.get_as_bytes(key=key)))

    def get_as_npz(self, key=None) -> list:
        import numpy

        npz = numpy.load(io.BytesIO(bytes(self.get_as_bytes(key=key))), allow_pickle=False)
        return [npz[name] for name in npz.files]

    def get_as_numpy(self, key=None) -> list:
        from .np_util import from_nd_list

        return from_nd_list(bytes(self.get_as_bytes(key=key)))
