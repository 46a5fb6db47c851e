/**
 * What every bench scenario shares: a measured cell (values or why there are none), medians,
 * the text of a cell in the markdown table, and the bench's stderr log.
 *
 * @example
 * ```ts
 * import { rangeText } from "./report.ts";
 * rangeText({ ok: true, values: [3, 1, 2] }, "ms", 0); // "1 / 2 / 3 ms"
 * ```
 * @module
 */

/** One measured value series, or why it is missing. */
export type Cell = { ok: true; values: number[] } | { ok: false; reason: string };

/** One row of the results table, already rendered. */
export interface Row {
  /** What was measured and how (first column). */
  scenario: string;
  /** containerd's cell. */
  containerd: string;
  /** containerd-ts's cell. */
  ours: string;
  /** containerd-ts / containerd. */
  ratio: string;
  /** Client ceiling or the machine's limit, "—" when none. */
  reference: string;
  /** server/rpc.ts's handler alone, "—" when not measured. */
  handler: string;
}

/** Median of a non-empty series. */
export function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Median of a cell, undefined when it has no values. */
export function cellMedian(cell: Cell | undefined): number | undefined {
  return cell?.ok ? median(cell.values) : undefined;
}

/** Message of anything thrown. */
export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A progress line on stderr (stdout is the report). */
export function log(line: string): void {
  console.error(`bench: ${line}`);
}

/** "min / median / max unit", or "n/a: reason". */
export function rangeText(cell: Cell | undefined, unit: string, digits: number): string {
  if (!cell) return "—";
  if (!cell.ok) return `n/a: ${cell.reason}`;
  const v = cell.values;
  const f = (x: number) => x.toFixed(digits);
  return `${f(Math.min(...v))} / ${f(median(v))} / ${f(Math.max(...v))} ${unit}`;
}

/** "×ours/theirs" (of medians when series), or "—" when either is missing. */
export function ratioText(ours: number | undefined, theirs: number | undefined): string {
  if (ours === undefined || theirs === undefined || !(theirs > 0)) return "—";
  return `×${(ours / theirs).toFixed(2)}`;
}

/** Render rows as a markdown table with the bench's columns. */
export function renderTable(rows: readonly Row[]): string {
  const lines = [
    "| scenario | containerd | containerd-ts | ratio (ts / containerd) | reference: client ceiling (fixed-reply server on server/h2_server.ts), that server's own boot and memory and Deno alone's, or machine limit | server/rpc.ts handler alone |",
    "|---|---|---|---|---|---|",
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${r.containerd} | ${r.ours} | ${r.ratio} | ${r.reference} | ${r.handler} |`,
    );
  }
  return lines.join("\n");
}
