// Where the registrar keeps its bindings across restarts of the node. The SipNode loads them
// once at start and the REGISTER handler saves an AOR's bindings after each accepted REGISTER.

import type { Binding } from './binding-store.js';

export interface BindingsPersistence {
  /** Every binding saved before (expired ones included: the store skips those). */
  load(): Promise<Binding[]>;
  /**
   * Replaces the saved bindings of one AOR (an empty list removes it), and resolves once the
   * change is durable. `when` = 'now' (the default) writes at once (or joins the write queued
   * behind the running one); 'soon', for a refresh that only moved expiry times, waits a few
   * ms for other refreshes to share the write.
   */
  save(aor: string, bindings: readonly Binding[], when?: 'now' | 'soon'): Promise<void>;
  /** Waits for writes still in progress (the node is closing). */
  flush?(): Promise<void>;
  /** Writes what is pending and lets go of open files (the node is closing). */
  close?(): Promise<void>;
}
