"""`from djl_python.encode_decode import decode, encode`: content-type driven request decoding and
reply encoding, the helpers DJL's built-in and many custom handlers use.

decode() returns the JSON body as-is, or {"inputs": ...} for text, csv, images, audio, tensors and
raw bytes; encode() writes JSON (default), csv, npz or NDList and sets Content-Type to match.
numpy (and Pillow for images) are imported only for the formats that need them.
"""

import csv
from io import StringIO

from .inputs import Input
from .outputs import Output

_CSV_HEADERS = ("question", "context", "inputs")


def decode_csv(inputs: Input, require_headers=True):
    text = inputs.get_as_string()
    if not require_headers:
        import numpy as np

        values = np.genfromtxt(StringIO(text), delimiter=",")
        if np.isnan(values).any():
            raise ValueError("CSV contains non-numeric data. Please provide numeric data only.")
        return values
    lines = text.splitlines()
    if not lines or not any(h in lines[0].lower() for h in _CSV_HEADERS):
        raise ValueError("You need to provide the correct CSV with Header columns "
                         f"({', '.join(_CSV_HEADERS)}) to use it with the default handler.")
    rows = list(csv.DictReader(StringIO(text)))
    if rows and "inputs" in rows[0]:
        return {"inputs": [row["inputs"] for row in rows]}
    return {"inputs": rows}


def encode_csv(content) -> str:
    rows = content if isinstance(content, list) else list(content)
    if not rows:
        return ""
    out = StringIO()
    writer = csv.DictWriter(out, list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def decode(inputs: Input, content_type: str, key=None, require_csv_headers=True):
    ct = (content_type or "").lower()
    if not ct:
        raw = inputs.get_as_bytes(key=key)
        return {"inputs": ""} if not raw else inputs.get_as_json(key=key)
    if "application/json" in ct:
        return inputs.get_as_json(key=key)
    if "text/csv" in ct:
        return decode_csv(inputs, require_headers=require_csv_headers)
    if "text/plain" in ct:
        return {"inputs": [inputs.get_as_string(key=key)]}
    if ct.startswith("image/"):
        return {"inputs": inputs.get_as_image(key=key)}
    if "tensor/npz" in ct:
        return {"inputs": inputs.get_as_npz(key=key)}
    if ct.split(";")[0].strip() in ("tensor/ndlist", "application/x-npy"):
        return {"inputs": inputs.get_as_numpy(key=key)}
    if ct.startswith("application/x-www-form-urlencoded"):
        return {"inputs": inputs.get_as_string(key=key)}
    return {"inputs": inputs.get_as_bytes(key=key)}  # audio/*, application/octet-stream, anything else


def encode(outputs: Output, prediction, content_type: str, key=None, batch_index=None):
    ct = (content_type or "").lower()
    if not ct or "application/json" in ct or "*/*" in ct:
        outputs.add_as_json(prediction, key=key, batch_index=batch_index)
        outputs.add_property("Content-Type", "application/json")
    elif "text/csv" in ct:
        outputs.add_as_string(encode_csv(prediction), key=key, batch_index=batch_index)
        outputs.add_property("Content-Type", "text/csv")
    elif "tensor/npz" in ct:
        outputs.add_as_npz(prediction, key=key, batch_index=batch_index)
        outputs.add_property("Content-Type", "tensor/npz")
    else:
        outputs.add_as_numpy(prediction, key=key, batch_index=batch_index)
        outputs.add_property("Content-Type", "tensor/ndlist")
    return outputs
