// Request body decoding by Content-Type (spec §3.1): JSON, text/plain, text/csv, urlencoded forms.
// The result is an untyped object for the request parsers; failures are InputParsingErrors (424)
// whose message says what was wrong. A text/plain body is one prompt (we do not wrap it in a list,
// which rolling batch would then reject).

import { InputParsingError } from "../http-errors.ts";

export function mediaType(contentType: string | undefined): string {
  return (contentType ?? "").split(";")[0].trim().toLowerCase();
}

export function decodeBody(contentType: string | undefined, body: Buffer | undefined): unknown {
  const type = mediaType(contentType);
  const text = body ? body.toString("utf8") : "";
  if (type === "" || type === "application/json" || type.endsWith("+json")) {
    if (text.trim() === "") return type === "" ? { inputs: "" } : failEmpty();
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new InputParsingError(`Invalid JSON body: ${(err as Error).message}`);
    }
  }
  if (type === "text/plain") return { inputs: text };
  if (type === "text/csv") return decodeCsv(text);
  if (type === "application/x-www-form-urlencoded") {
    const form = new URLSearchParams(text);
    const inputs = form.getAll("inputs");
    if (inputs.length === 0) throw new InputParsingError("The form has no 'inputs' field.");
    const out: Record<string, unknown> = { inputs: inputs.length === 1 ? inputs[0] : inputs };
    const params = form.get("parameters");
    if (params !== null) {
      try {
        out.parameters = JSON.parse(params);
      } catch {
        throw new InputParsingError("The form field 'parameters' is not valid JSON.");
      }
    }
    return out;
  }
  throw new InputParsingError(
    `Unsupported Content-Type '${type}': send application/json, text/plain, text/csv or application/x-www-form-urlencoded.`,
  );
}

function failEmpty(): never {
  throw new InputParsingError("The request body is empty.");
}

/** CSV with a header row; the column `inputs` (or `question`/`context`) gives the prompts. */
function decodeCsv(text: string): { inputs: string | string[] } {
  const rows = text
    .split(/\r?\n/)
    .filter((l) => l.trim() !== "")
    .map(splitCsvLine);
  if (rows.length < 2) throw new InputParsingError("text/csv needs a header row and at least one data row.");
  const header = rows[0].map((h) => h.trim());
  const col = ["inputs", "question", "context"].map((n) => header.indexOf(n)).find((i) => i >= 0);
  if (col === undefined) throw new InputParsingError("text/csv needs a header column named 'inputs'.");
  const values = rows.slice(1).map((r) => r[col] ?? "");
  return { inputs: values.length === 1 ? values[0] : values };
}

function splitCsvLine(line: string): string[] {
  const out: string[] = [];
  let cur = "";
  let quoted = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (quoted) {
      if (c === '"' && line[i + 1] === '"') {
        cur += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cur += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") {
      out.push(cur);
      cur = "";
    } else cur += c;
  }
  out.push(cur);
  return out;
}
