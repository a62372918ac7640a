/** One Server-Sent Events block that carried data: its event name, id and retry hint when given, and its data lines joined. */
export interface SseBlock {
  event: string;
  id: string | null;
  retry: number | null;
  data: string;
}

/** The data-carrying blocks of an event stream's body, in order, as they arrive. */
export async function* sseBlocks(body: AsyncIterable<Uint8Array>): AsyncGenerator<SseBlock> {
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of body) {
    buffer += decoder.decode(chunk, { stream: true });
    let cut: number;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = 'message';
      let id: string | null = null;
      let retry: number | null = null;
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
        else if (line.startsWith('id: ')) id = line.slice(4);
        else if (line.startsWith('retry: ')) retry = Number(line.slice(7));
      }
      if (data.length > 0) yield { event, id, retry, data: data.join('\n') };
    }
  }
}
