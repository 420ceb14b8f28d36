/**
 * The bad lines of a line-oriented file (an allowlist, a local TLSA file),
 * collected so that the operator sees all of them at once, not one per
 * attempt; bounded, so that a file of garbage does not become a huge
 * message. Pure.
 */

/** Bad lines listed one by one; the rest are counted. */
export const MAX_LISTED_BAD_LINES = 20;

export class BadLines {
  private readonly listed: string[] = [];
  private more = 0;

  constructor(
    /** Names the file (or key path) in the "and N more" line. */
    private readonly source: string,
    private readonly max = MAX_LISTED_BAD_LINES,
  ) {}

  /** Record one bad line's message (already naming its source and line). */
  add(message: string): void {
    if (this.listed.length < this.max) this.listed.push(message);
    else this.more++;
  }

  get count(): number {
    return this.listed.length + this.more;
  }

  /** One entry per listed bad line, then "SOURCE: and N more bad lines" when some were left out. */
  report(): string[] {
    if (this.more === 0) return [...this.listed];
    return [...this.listed, `${this.source}: and ${this.more} more bad line${this.more === 1 ? '' : 's'}`];
  }
}
