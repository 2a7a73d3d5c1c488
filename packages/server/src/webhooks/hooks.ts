/**
 * How Sluice's own causes reach the outbox without the webhooks module reaching into
 * other modules: the composition root hands each cause's committed result to the
 * webhook service. Streams have no global close listener, so the stream store is wrapped:
 * a save whose event is "closed" has committed the close when it returns.
 */
import type { StreamStore } from '../streams/store.js';
import type { StreamEvent, StreamRow } from '../streams/model.js';
import type { ClosedStream } from './payloads.js';

export function closedStreamOf(row: StreamRow, event: StreamEvent): ClosedStream {
  const by = (event.data as { by?: unknown }).by;
  return { id: row.id, appId: row.appId, metadata: row.metadata, createdAt: row.createdAt, closedAt: row.closedAt, closedBy: typeof by === 'string' ? by : 'unknown' };
}

/** The same store, telling `onClosed` after a stream's close has been committed. */
export function observeStreamCloses(store: StreamStore, onClosed: (stream: ClosedStream) => void): StreamStore {
  return {
    ...store,
    async saveWithEvent(row, event) {
      await store.saveWithEvent(row, event);
      if (event?.type === 'closed' && row.status === 'closed') onClosed(closedStreamOf(row, event));
    },
  };
}
