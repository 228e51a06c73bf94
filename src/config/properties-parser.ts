// Java `.properties` syntax (java.util.Properties.load), as DJL reads serving.properties and config.properties.
// Invariants: keys and values come back unescaped, keys trimmed, values with Java's exact whitespace rules
// (leading whitespace dropped, trailing kept); every entry knows the line its logical line starts on; every
// syntax problem is collected (not just the first) and thrown as one ConfigError whose lines read "file:line: …".
import { readFileSync } from "node:fs";
import { ConfigError } from "../errors.ts";

export interface PropertyEntry {
  key: string;
  value: string;
  /** 1-based line where the entry's logical line starts. */
  line: number;
}

const WHITESPACE = new Set([" ", "\t", "\f"]);

/** One logical line: natural lines joined where a line ends in an odd number of backslashes. */
interface LogicalLine {
  text: string;
  /** Natural line number of each character of text (continuations start on later lines). */
  lineOf: number[];
}

function splitNaturalLines(text: string): string[] {
  // Java accepts \n, \r and \r\n as terminators.
  return text.split(/\r\n|\r|\n/);
}

function endsWithContinuation(line: string): boolean {
  let n = 0;
  for (let i = line.length - 1; i >= 0 && line[i] === "\\"; i--) n++;
  return n % 2 === 1;
}

function skipLeadingWhitespace(line: string): string {
  let i = 0;
  while (i < line.length && WHITESPACE.has(line[i])) i++;
  return line.slice(i);
}

function logicalLines(text: string): LogicalLine[] {
  const natural = splitNaturalLines(text);
  const out: LogicalLine[] = [];
  for (let i = 0; i < natural.length; i++) {
    const first = skipLeadingWhitespace(natural[i]);
    // Blank and comment lines never continue, even when they end in a backslash.
    if (first === "" || first[0] === "#" || first[0] === "!") continue;
    let textPart = first;
    let lineOf = Array.from({ length: first.length }, () => i + 1);
    while (endsWithContinuation(textPart) && i + 1 < natural.length) {
      textPart = textPart.slice(0, -1);
      lineOf = lineOf.slice(0, -1);
      i++;
      const next = skipLeadingWhitespace(natural[i]);
      textPart += next;
      lineOf = lineOf.concat(Array.from({ length: next.length }, () => i + 1));
    }
    if (endsWithContinuation(textPart)) {
      // A continuation on the last line of the file continues into nothing.
      textPart = textPart.slice(0, -1);
      lineOf = lineOf.slice(0, -1);
    }
    out.push({ text: textPart, lineOf });
  }
  return out;
}

/** Index just past the key: the first unescaped '=', ':' or whitespace. */
function keyEnd(text: string): number {
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\") {
      i += 2;
      continue;
    }
    if (c === "=" || c === ":" || WHITESPACE.has(c)) return i;
    i++;
  }
  return text.length;
}

/** Start of the value: skip whitespace, at most one '=' or ':', then whitespace again. */
function valueStart(text: string, from: number): number {
  let i = from;
  while (i < text.length && WHITESPACE.has(text[i])) i++;
  if (i < text.length && (text[i] === "=" || text[i] === ":")) i++;
  while (i < text.length && WHITESPACE.has(text[i])) i++;
  return i;
}

const SIMPLE_ESCAPES: Record<string, string> = { t: "\t", n: "\n", r: "\r", f: "\f" };

/** Undo Java escapes in text[start, end); malformed \uXXXX is reported and kept literally. */
function unescapeJava(
  text: string,
  start: number,
  end: number,
  onMalformed: (index: number, found: string) => void,
): string {
  let out = "";
  let i = start;
  while (i < end) {
    const c = text[i];
    if (c !== "\\" || i + 1 >= end) {
      out += c;
      i++;
      continue;
    }
    const e = text[i + 1];
    if (e === "u") {
      const hex = text.slice(i + 2, Math.min(i + 6, end));
      if (/^[0-9a-fA-F]{4}$/.test(hex)) {
        out += String.fromCharCode(Number.parseInt(hex, 16));
        i += 6;
      } else {
        onMalformed(i, text.slice(i, Math.min(i + 6, end)));
        out += "\\u";
        i += 2;
      }
      continue;
    }
    out += SIMPLE_ESCAPES[e] ?? e;
    i += 2;
  }
  return out;
}

/**
 * Parses properties text. `file` names the source in error messages.
 * Duplicate keys are all returned in order (the caller decides; Java keeps the last).
 */
export function parseProperties(text: string, file: string): PropertyEntry[] {
  const entries: PropertyEntry[] = [];
  const problems: string[] = [];
  for (const logical of logicalLines(text)) {
    const { text: t, lineOf } = logical;
    const malformed = (index: number, found: string) =>
      problems.push(
        `${file}:${lineOf[index]}: malformed \\uXXXX escape "${found}" (a \\u must be followed by 4 hex digits)`,
      );
    const kEnd = keyEnd(t);
    const vStart = valueStart(t, kEnd);
    const key = unescapeJava(t, 0, Math.min(kEnd, t.length), malformed);
    const value = unescapeJava(t, vStart, t.length, malformed);
    entries.push({ key, value, line: lineOf[0] });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return entries;
}

/** Finds the 1-based line of the first byte sequence that is not valid UTF-8. */
function firstBadUtf8Line(bytes: Buffer): number {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let line = 1;
  let start = 0;
  for (let i = 0; i <= bytes.length; i++) {
    if (i === bytes.length || bytes[i] === 0x0a) {
      try {
        decoder.decode(bytes.subarray(start, i));
      } catch {
        return line;
      }
      line++;
      start = i + 1;
    }
  }
  return line;
}

/** Reads and parses a properties file (UTF-8, as DJL reads it). */
export function readPropertiesFile(path: string): PropertyEntry[] {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError([`${path}: cannot read the properties file: ${reason}`]);
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError([`${path}:${firstBadUtf8Line(bytes)}: the file is not valid UTF-8`]);
  }
  // A UTF-8 byte order mark is not part of the first key.
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  return parseProperties(text, path);
}
