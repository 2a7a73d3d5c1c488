/**
 * Node keys and preimages for the devnet. Keys are real secp256k1 keys (invoices are
 * signed with them and any BOLT 11 decoder recovers the pubkey), kept in devnet.sqlite so
 * a node keeps its identity across restarts. They control nothing but fake money.
 */
import { createHash, randomBytes } from 'node:crypto';
import { secp256k1 } from '@noble/curves/secp256k1.js';

export interface NodeKey {
  privateKey: Uint8Array;
  /** 33-byte compressed public key, lowercase hex. */
  pubkey: string;
}

export function nodeKeyFromPrivateKey(privateKey: Uint8Array): NodeKey {
  if (!secp256k1.utils.isValidSecretKey(privateKey)) throw new Error('devnet node key is not a valid secp256k1 secret key');
  return { privateKey, pubkey: Buffer.from(secp256k1.getPublicKey(privateKey, true)).toString('hex') };
}

/**
 * With a seed, a node's key is SHA-256("sluice-devnet-node-key", seed, name), hashed again
 * in the (astronomically unlikely) case it is not a valid secret key: tests get the same
 * pubkeys on every run. Without a seed, a random key.
 */
export function generateNodeKey(name: string, seed: string | undefined): NodeKey {
  if (seed === undefined) return nodeKeyFromPrivateKey(secp256k1.utils.randomSecretKey());
  let candidate = createHash('sha256').update(`sluice-devnet-node-key\0${seed}\0${name}`).digest();
  while (!secp256k1.utils.isValidSecretKey(candidate)) candidate = createHash('sha256').update(candidate).digest();
  return nodeKeyFromPrivateKey(new Uint8Array(candidate));
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function random32Hex(): string {
  return randomBytes(32).toString('hex');
}

const HEX32 = /^[0-9a-f]{64}$/;

export function isHex32(text: unknown): text is string {
  return typeof text === 'string' && HEX32.test(text);
}

export function bytesFromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, 'hex'));
}
