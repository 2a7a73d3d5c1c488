/**
 * Types for the `macaroon` package (3.0.4 ships none): only the part Sluice uses.
 * Byte arrays are Uint8Array; strings given where bytes are expected are UTF-8 encoded
 * by the library.
 */
declare module 'macaroon' {
  namespace macaroon {
    interface MacaroonCaveat {
      identifier: Uint8Array;
      /** Present on third-party caveats only. */
      location?: string;
      vid?: Uint8Array;
    }

    interface Macaroon {
      readonly identifier: Uint8Array;
      readonly location: string;
      readonly signature: Uint8Array;
      readonly caveats: MacaroonCaveat[];
      addFirstPartyCaveat(caveatId: string | Uint8Array): void;
      /** Throws when the signature or a caveat check fails; `check` returns an error text or null. */
      verify(rootKey: Uint8Array, check: (condition: string) => string | null, discharges?: Macaroon[]): void;
      /** Beware: 3.0.4 doubles its buffer on every append (see the L402 ADR); Sluice encodes V2 itself. */
      exportBinary(): Uint8Array;
      exportJSON(): Record<string, unknown>;
    }

    function newMacaroon(params: { identifier: string | Uint8Array; location?: string; rootKey: string | Uint8Array; version?: 1 | 2 }): Macaroon;
    /** A base64 string (binary or JSON macaroon), binary bytes, or a JSON object. */
    function importMacaroon(value: string | Uint8Array | Record<string, unknown>): Macaroon;
    function importMacaroons(value: string | Uint8Array | Record<string, unknown>[]): Macaroon[];
    function bytesToBase64(bytes: Uint8Array): string;
    function base64ToBytes(text: string): Uint8Array;
  }
  export = macaroon;
}
