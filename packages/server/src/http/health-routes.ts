/** GET /v1/health: liveness plus what this instance runs on. */
import { Type } from 'typebox';
import type { NodeInfo } from '../lightning/backend.js';
import type { SluiceFastify } from './server.js';

export function registerHealthRoutes(app: SluiceFastify, deps: { nodeInfo: () => NodeInfo; store: 'sqlite' | 'postgres' }): void {
  app.get('/v1/health', {
    config: { auth: 'none' },
    schema: {
      summary: 'Health and configuration summary',
      tags: ['health'],
      security: [],
      response: {
        200: Type.Object({
          status: Type.Literal('ok'),
          lightning: Type.Object({
            backend: Type.String(),
            network: Type.String(),
            pubkey: Type.String(),
            fake_money: Type.Boolean({ description: 'true on the devnet: nothing here is real bitcoin.' }),
          }),
          store: Type.Union([Type.Literal('sqlite'), Type.Literal('postgres')]),
        }),
      },
    },
  }, async () => {
    const info = deps.nodeInfo();
    return {
      status: 'ok' as const,
      lightning: { backend: info.backend, network: info.network, pubkey: info.pubkey, fake_money: info.backend === 'devnet' },
      store: deps.store,
    };
  });
}
