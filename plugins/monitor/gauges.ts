/**
 * The prom-client side of the cgroups monitor: a gauge whose series are whatever the current
 * scrape found. Kept apart from cgroups.ts so prom-client is loaded only when the daemon
 * serves metrics (cgroups.ts imports this module on demand).
 *
 * @module
 */
import { Gauge } from "prom-client";

/** One series of a scraped family: labels and value, as prom-client reports them. */
export type ScrapedValue = Awaited<ReturnType<Gauge["get"]>>["values"][number];

/** A family's name and help text. */
export interface ScrapedFamily {
  name: string;
  help: string;
}

/** A gauge whose series come from `scrape()` (shared by every family of one scrape). */
export class ScrapedGauge extends Gauge {
  readonly #scrape: () => Promise<Map<string, ScrapedValue[]>>;
  /** The family's name, as registered. */
  readonly family: string;

  constructor(family: ScrapedFamily, scrape: () => Promise<Map<string, ScrapedValue[]>>) {
    super({ name: family.name, help: family.help, registers: [] });
    this.family = family.name;
    this.#scrape = scrape;
  }

  override async get(): ReturnType<Gauge["get"]> {
    const [base, scrape] = await Promise.all([super.get(), this.#scrape()]);
    return { ...base, values: scrape.get(this.family) ?? [] };
  }
}
