// A tiny event emitter shared by the signalling and media classes.

export class Emitter {
  constructor() {
    this._listeners = new Map();
  }

  /** Subscribe; returns a function that unsubscribes. */
  on(type, fn) {
    if (!this._listeners.has(type)) this._listeners.set(type, new Set());
    this._listeners.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._listeners.get(type);
    if (set) set.delete(fn);
  }

  emit(type, ...args) {
    const set = this._listeners.get(type);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(...args);
      } catch (err) {
        // A broken listener must not stop the others; log only the event type.
        console.error(`listener for "${type}" failed`, err);
      }
    }
  }
}
