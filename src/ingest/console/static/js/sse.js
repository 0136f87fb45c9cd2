// Server-sent events read from a fetch() body: EventSource cannot send an Authorization header.

/** Splits a text/event-stream into events as chunks of it arrive. */
export class SseParser {
  constructor() {
    this.buffer = "";
  }

  /** Feed a decoded chunk; returns the events it completed, each {event, data, id}. */
  push(text) {
    this.buffer += text.replace(/\r\n?/g, "\n");
    const events = [];
    let end;
    while ((end = this.buffer.indexOf("\n\n")) !== -1) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const event = { event: "message", data: "", id: null };
      const data = [];
      for (const line of block.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        let value = colon === -1 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "event") event.event = value;
        else if (field === "data") data.push(value);
        else if (field === "id") event.id = value;
      }
      if (data.length) {
        event.data = data.join("\n");
        events.push(event);
      }
    }
    return events;
  }
}
