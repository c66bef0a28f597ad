/** One Server-Sent Event as received: its name (default "message") and data. */
export interface ReceivedEvent {
  event: string;
  data: string;
}

/**
 * Reads a text/event-stream response to its end, event by event (comment lines such as `: ping` and
 * `retry:` are skipped). Calls onEvent as each arrives; resolves with all of them when the server closes.
 */
export async function readEventStream(res: Response, onEvent: (event: ReceivedEvent) => void = () => {}): Promise<ReceivedEvent[]> {
  const events: ReceivedEvent[] = [];
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    buffer += decoder.decode(chunk, { stream: true });
    let boundary: number;
    while ((boundary = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, boundary);
      buffer = buffer.slice(boundary + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (data.length === 0) continue;
      const received = { event, data: data.join('\n') };
      events.push(received);
      onEvent(received);
    }
  }
  return events;
}
