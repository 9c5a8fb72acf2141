// Where the registrar keeps its bindings across restarts of the node. The SipNode loads them
// once at start and the REGISTER handler saves an AOR's bindings after each accepted REGISTER.

import type { Binding } from './binding-store.js';

export interface BindingsPersistence {
  /** Every binding saved before (expired ones included: the store skips those). */
  load(): Promise<Binding[]>;
  /** Replaces the saved bindings of one AOR (an empty list removes it). */
  save(aor: string, bindings: readonly Binding[]): Promise<void>;
  /** Waits for writes still in progress (the node is closing). */
  flush?(): Promise<void>;
}
