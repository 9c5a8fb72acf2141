// Where the registrar keeps its bindings across restarts of the node. The SipNode loads them
// once at start and the REGISTER handler saves an AOR's bindings after each accepted REGISTER.

import type { Binding } from './binding-store.js';

export interface BindingsPersistence {
  /** Every binding saved before (expired ones included: the store skips those). */
  load(): Promise<Binding[]>;
  /**
   * Replaces the saved bindings of one AOR (an empty list removes it). `when` = 'now' (the
   * default) resolves once the change is durable; 'soon' resolves at once and writes within
   * a second, for a refresh that only moved expiry times (a crash before that write leaves
   * the same bindings with their previous expiry, never a lost one).
   */
  save(aor: string, bindings: readonly Binding[], when?: 'now' | 'soon'): Promise<void>;
  /** Waits for writes still in progress (the node is closing). */
  flush?(): Promise<void>;
  /** Writes what is pending and lets go of open files (the node is closing). */
  close?(): Promise<void>;
}
