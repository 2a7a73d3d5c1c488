// BOLT 11 test vectors from ../shared/reference/bolts/11-payment-encoding.md ("Examples"
// and "Examples of Invalid Invoices"): the fields the LND client reads from them.
import { describe, expect, it } from 'vitest';
import { summarizePaymentRequest } from '../../src/lightning/lnd/payment-request.js';

const SPEC_HASH = '0001020304050607080900010203040506070809000102030405060708090102';
const SPEC_TIMESTAMP_S = 1496314658;

const valid = [
  {
    description: 'donation of any amount (no amount, default expiry)',
    request:
      'lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql',
    expected: { currency: 'bc', amountMsat: null, expiryS: 3600 },
  },
  {
    description: '$3 for a cup of coffee within one minute (2500u, x = 60)',
    request:
      'lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh',
    expected: { currency: 'bc', amountMsat: 250_000_000n, expiryS: 60 },
  },
  {
    description: 'testnet, 20m, with a fallback address',
    request:
      'lntb20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfpp3x9et2e20v6pu37c5d9vax37wxq72un989qrsgqdj545axuxtnfemtpwkc45hx9d2ft7x04mt8q7y6t0k2dge9e7h8kpy9p34ytyslj3yu569aalz2xdk8xkd7ltxqld94u8h2esmsmacgpghe9k8',
    expected: { currency: 'tb', amountMsat: 2_000_000_000n, expiryS: 3600 },
  },
  {
    description: 'coffee beans, all upper case (25m)',
    request:
      'LNBC25M1PVJLUEZPP5QQQSYQCYQ5RQWZQFQQQSYQCYQ5RQWZQFQQQSYQCYQ5RQWZQFQYPQDQ5VDHKVEN9V5SXYETPDEESSP5ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYG3ZYGS9Q5SQQQQQQQQQQQQQQQQSGQ2A25DXL5HRNTDTN6ZVYDT7D66HYZSYHQS4WDYNAVYS42XGL6SGX9C4G7ME86A27T07MDTFRY458RTJR0V92CNMSWPSJSCGT2VCSE3SGPZ3UAPA',
    expected: { currency: 'bc', amountMsat: 2_500_000_000n, expiryS: 3600 },
  },
];

const invalid = [
  {
    description: 'Bech32 checksum is invalid',
    request:
      'lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh',
    error: 'NotBech32',
  },
  {
    description: 'malformed bech32 string (no 1)',
    request:
      'pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jf',
    error: 'NotBech32',
  },
  {
    description: 'invalid multiplier',
    request:
      'lnbc2500x1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqrrzc4cvfue4zp3hggxp47ag7xnrlr8vgcmkjxk3j5jqethnumgkpqp23z9jclu3v0a7e0aruz366e9wqdykw6dxhdzcjjhldxq0w6wgqcnu43j',
    error: 'BadPrefix',
  },
  {
    description: 'invalid sub-millisatoshi precision',
    request:
      'lnbc2500000001p1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgq0lzc236j96a95uv0m3umg28gclm5lqxtqqwk32uuk4k6673k6n5kfvx3d2h8s295fad45fdhmusm8sjudfhlf6dcsxmfvkeywmjdkxcp99202x',
    error: 'BadAmount',
  },
  { description: 'not an invoice at all', request: 'lnbcrt1notaninvoice', error: 'NotBech32' },
  { description: 'empty', request: '', error: 'NotBech32' },
];

describe('summarizePaymentRequest', () => {
  it.each(valid)('$description', ({ request, expected }) => {
    const result = summarizePaymentRequest(request);
    expect(result).toEqual({ ok: true, value: { ...expected, timestampS: SPEC_TIMESTAMP_S, paymentHash: SPEC_HASH } });
  });

  it.each(invalid)('refuses: $description', ({ request, error }) => {
    expect(summarizePaymentRequest(request)).toEqual({ ok: false, error });
  });
});
