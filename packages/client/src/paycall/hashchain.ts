/**
 * The client's half of a hash-chain token (docs/paycall.md section 1): a secret seed w_N and
 * the links w_(i-1) = SHA-256(w_i) down to the anchor w_0.
 *
 * Memory against CPU: keeping every link costs N x 32 bytes (32 MB for 1,000,000 steps);
 * recomputing w_i from the seed costs N - i hashes per call. This keeps one checkpoint every
 * C = ceil(sqrt(N)) links and, since calls spend links in increasing order, materializes one
 * segment of C links at a time. So memory is about 2 x sqrt(N) x 32 bytes (64 KB for a
 * million steps) and the whole chain costs 2N hashes: N to find the anchor and the
 * checkpoints, N again, one segment at a time, as the links are spent. Hashing uses Web
 * Crypto (`crypto.subtle.digest`), the same in browsers and Node, with no dependency; it is
 * asynchronous and costs tens of microseconds per hash in Node 20, so buying a chain of
 * 100,000 steps takes a few seconds of hashing (spread over the event loop, never blocking it).
 */

/** The Web Crypto API, or a clear error where it is missing (an insecure browser context). */
function webCrypto(): Crypto {
  const crypto = globalThis.crypto;
  if (crypto === undefined || crypto.subtle === undefined) {
    throw new Error('the paying fetch needs the Web Crypto API (globalThis.crypto.subtle): a secure context in browsers, Node 20+');
  }
  return crypto;
}

/** Bytes backed by a plain ArrayBuffer (what Web Crypto takes). */
export type Bytes = Uint8Array<ArrayBuffer>;

/** SHA-256 of a byte string. */
export async function sha256(bytes: Bytes): Promise<Bytes> {
  return new Uint8Array(await webCrypto().subtle.digest('SHA-256', bytes));
}

/** Lowercase hex, as links travel on the wire. */
export function toHex(bytes: Uint8Array): string {
  let text = '';
  for (const byte of bytes) text += byte.toString(16).padStart(2, '0');
  return text;
}

/** Bytes of a lowercase or uppercase hex string of even length. */
export function fromHex(text: string): Bytes {
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(text)) throw new TypeError('not a hex string of whole bytes');
  const bytes = new Uint8Array(text.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** 32 random bytes from the platform's CSPRNG. */
export function drawSeed(): Bytes {
  return webCrypto().getRandomValues(new Uint8Array(32));
}

/** Most steps a chain may have (the server's limit). */
export const MAX_CHAIN_STEPS = 10_000_000;

/**
 * The links of one chain, recomputed from checkpoints as they are asked for. `linkAt(i)` is
 * cheapest when i only grows (the way calls spend a chain); going back costs one segment.
 */
export class HashChain {
  readonly steps: number;
  readonly anchor: Bytes;
  readonly #seed: Bytes;
  readonly #every: number;
  /** checkpoints[j] = w_(j x every), for j x every <= steps. */
  readonly #checkpoints: Bytes[];
  #segment: { first: number; links: Bytes[] } | null = null;

  private constructor(seed: Bytes, steps: number, every: number, checkpoints: Bytes[]) {
    this.#seed = seed;
    this.steps = steps;
    this.#every = every;
    this.#checkpoints = checkpoints;
    this.anchor = checkpoints[0] as Bytes;
  }

  /** Builds the chain of `steps` links from `seed` (N hashes, each awaited). */
  static async build(seed: Bytes, steps: number): Promise<HashChain> {
    if (seed.length !== 32) throw new TypeError('a chain seed is 32 bytes');
    if (!Number.isInteger(steps) || steps < 1 || steps > MAX_CHAIN_STEPS) throw new TypeError(`steps must be an integer from 1 to ${MAX_CHAIN_STEPS}, got ${String(steps)}`);
    const every = Math.max(1, Math.ceil(Math.sqrt(steps)));
    const checkpoints: Bytes[] = new Array<Bytes>(Math.floor(steps / every) + 1);
    let link = seed.slice();
    for (let i = steps; ; i -= 1) {
      if (i % every === 0) checkpoints[i / every] = link;
      if (i === 0) break;
      link = await sha256(link);
    }
    return new HashChain(seed.slice(), steps, every, checkpoints);
  }

  /** The seed, w_N (a secret: whoever holds it can spend the chain). */
  get seed(): Bytes {
    return this.#seed.slice();
  }

  /** w_index, for 0 <= index <= steps. */
  async linkAt(index: number): Promise<Bytes> {
    if (!Number.isInteger(index) || index < 0 || index > this.steps) throw new RangeError(`index ${index} is outside the chain 0..${this.steps}`);
    const first = Math.floor(index / this.#every) * this.#every;
    if (this.#segment === null || this.#segment.first !== first) {
      // Links first..last of this segment, from the checkpoint above it (or the seed).
      const last = Math.min(first + this.#every, this.steps);
      const top = last === this.steps ? this.#seed : (this.#checkpoints[last / this.#every] as Bytes);
      const links = new Array<Bytes>(last - first + 1);
      let link = top;
      for (let i = last; ; i -= 1) {
        links[i - first] = link;
        if (i === first) break;
        link = await sha256(link);
      }
      this.#segment = { first, links };
    }
    return this.#segment.links[index - first] as Bytes;
  }
}
