// A minimal event emitter: on(name, handler) returns a function that removes the handler.
// A handler that throws is reported on the console and does not stop the others.

export class Emitter {
  constructor() {
    this.handlers = new Map();
  }

  on(name, handler) {
    if (!this.handlers.has(name)) this.handlers.set(name, new Set());
    this.handlers.get(name).add(handler);
    return () => this.off(name, handler);
  }

  off(name, handler) {
    this.handlers.get(name)?.delete(handler);
  }

  emit(name, payload) {
    for (const handler of [...(this.handlers.get(name) ?? [])]) {
      try {
        handler(payload);
      } catch (err) {
        console.error(`handler for "${name}" failed`, err);
      }
    }
  }
}
