// Iterative lookup (Kademlia §2.3) over d disjoint paths (S/Kademlia §4.4).
//
// Each path keeps a shortlist sorted by distance to the target and keeps up to α requests in
// flight to the closest contacts it has not asked yet. A path ends when the k closest live
// contacts it knows have all answered: the Kademlia termination rule. A node is queried by
// one path at most, so a path led astray by lying nodes cannot drag the others with it. A
// value lookup ends as soon as `quorum` holders have answered with values. Once a holder has
// answered, a single-path value lookup with a `hedge` sends no request beyond those that could complete
// the quorum, unless these come back without values, fail, or are late (the hedge): the
// holders are found, and each request more costs a signature here and a check at its
// receiver for nothing.

import type { Contact } from '../contact.js';
import { TimeoutError } from '../errors.js';
import { compareDistance, idEquals, idToHex, type NodeId } from '../node-id.js';
import type { WireValue } from '../rpc/messages.js';

/** What one queried contact answered. */
export interface QueryAnswer {
  contacts: readonly Contact[];
  values?: readonly WireValue[];
}

export type TraceOutcome = 'nodes' | 'value' | 'failed';

/** One request of a lookup, for diagnostics (`peerbx trace`). */
export interface TraceStep {
  readonly contact: Contact;
  readonly hop: number;
  readonly path: number;
  readonly outcome: TraceOutcome;
  /** Contacts the answer carried. */
  readonly returned: number;
}

export interface LookupParams {
  target: NodeId;
  ownId: NodeId;
  k: number;
  alpha: number;
  paths: number;
  /** Stop and report after this many requests whatever the state. */
  maxRequests: number;
  /** Starting contacts, closest first (the routing table's best). */
  initial: readonly Contact[];
  /** Sends the lookup's request to one contact; rejects when it fails. */
  query: (contact: Contact) => Promise<QueryAnswer>;
  /** The contact hook: returning false keeps a contact out of the lookup. */
  accept?: (contact: Contact) => boolean;
  /** An answer named this node's own ID (left out of the lookup), at the contact's address. */
  onSelf?: (contact: Contact) => void;
  /**
   * Contacts presumed dead: counted as silent without being asked, so that none holds the
   * lookup up for a timeout, and closestSilent still says the closest nodes did not answer.
   */
  presumedSilent?: (contact: Contact) => boolean;
  /** For value lookups: holders with values needed before the lookup ends. 0 = node lookup. */
  quorum?: number;
  trace?: boolean;
  /**
   * This node, when it holds values itself and found none under the target: it counts as a
   * contact that answered for closestSilent/closestAsked (it is never asked).
   */
  self?: Contact;
  /**
   * For value lookups: called with a holder's values as they arrive when the lookup goes on
   * waiting for more holders, so the caller can start checking them meanwhile.
   */
  onValues?: (values: readonly WireValue[], holder: Contact) => void;
  /**
   * For value lookups over one path: once a holder has answered, only as many requests stay
   * out as holders are still needed, until `afterMs` pass without the quorum (the requests out
   * are late: the lookup asks α again). Without it, or over disjoint paths, every path keeps
   * α requests out.
   */
  hedge?: {
    afterMs: number;
    /** Runs fn after ms; returns what cancels it. */
    schedule: (fn: () => void, ms: number) => () => void;
  };
}

export interface FoundValue extends WireValue {
  readonly holder: Contact;
}

export interface LookupResult {
  /** The k closest contacts that answered, closest first. */
  closest: Contact[];
  /** Values found (value lookups), with the contact that held each. */
  values: FoundValue[];
  /** Hops to the first holder of a value, or to the closest contact for node lookups. */
  hops: number;
  requests: number;
  failures: number;
  /**
   * Of the k closest contacts the lookup asked (answered or timed out; this node too, when it
   * was passed as `self`; and those presumed silent, not asked), how many timed out or were
   * presumed silent. A value lookup that found nothing while most of them were silent has not
   * shown that the value is absent: its holders may only have been too slow. A refusal or an
   * error reply is an answer, not silence. Presumed-silent contacts leave no trace step.
   */
  closestSilent: number;
  /** How many contacts that is out of (k, or fewer when the lookup asked fewer). */
  closestAsked: number;
  trace: TraceStep[];
}

type State = 'new' | 'pending' | 'answered' | 'failed' | 'silent';

interface Candidate {
  contact: Contact;
  hop: number;
  state: State;
  /** Counted silent without being asked (params.presumedSilent). */
  presumed?: boolean;
}

interface Path {
  readonly index: number;
  readonly shortlist: Candidate[];
  inFlight: number;
}

/** The result of a lookup that asked nobody (values found locally, say). */
export function noLookup(values: FoundValue[] = []): LookupResult {
  return {
    closest: [],
    values,
    hops: 0,
    requests: 0,
    failures: 0,
    closestSilent: 0,
    closestAsked: 0,
    trace: [],
  };
}

export function lookup(params: LookupParams): Promise<LookupResult> {
  const { target, k, alpha, maxRequests } = params;
  const quorum = params.quorum ?? 0;
  const accept = params.accept ?? (() => true);
  const pathCount = Math.max(1, params.paths);
  // Which path owns each contact seen, so that no node serves two paths.
  const owner = new Map<string, number>();
  const paths: Path[] = [];
  for (let i = 0; i < pathCount; i++) paths.push({ index: i, shortlist: [], inFlight: 0 });

  const result = noLookup();
  let holders = 0;
  let finished = false;
  // Set while only the requests that could complete the quorum are out (see `hedge`).
  let cancelHedge: (() => void) | undefined;
  let hedged = false;
  const inFlight = () => paths.reduce((n, p) => n + p.inFlight, 0);
  // Only a single-path lookup is held back: disjoint paths must each go on as they would
  // alone (one held back by another's requests would be settled with contacts unasked).
  const hedge = pathCount === 1 ? params.hedge : undefined;
  const room = (path: Path): boolean => {
    if (path.inFlight >= alpha) return false;
    if (holders === 0 || hedged || !hedge) return true;
    return inFlight() < quorum - holders;
  };

  const insert = (path: Path, contact: Contact, hop: number): void => {
    if (idEquals(contact.id, params.ownId)) {
      params.onSelf?.(contact);
      return;
    }
    if (!accept(contact)) return;
    const key = idToHex(contact.id);
    const had = owner.get(key);
    if (had !== undefined) {
      // A node counted silent at an address it was presumed dead at, named at another: it
      // came back there (a restart on another port), and is asked there.
      const seen = paths[had]!.shortlist.find((c) => idEquals(c.contact.id, contact.id));
      if (
        seen?.presumed &&
        seen.state === 'silent' &&
        seen.contact.address !== contact.address &&
        !params.presumedSilent?.(contact)
      ) {
        seen.contact = contact;
        seen.state = 'new';
        seen.presumed = false;
      }
      return;
    }
    owner.set(key, path.index);
    const list = path.shortlist;
    // Binary insertion keeps the shortlist sorted by distance.
    let lo = 0;
    let hi = list.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (compareDistance(target, list[mid]!.contact.id, contact.id) < 0) lo = mid + 1;
      else hi = mid;
    }
    const presumed = params.presumedSilent?.(contact) ?? false;
    list.splice(lo, 0, { contact, hop, state: presumed ? 'silent' : 'new', presumed });
  };

  // Deal the starting contacts round-robin so every path starts near the target.
  params.initial.forEach((c, i) => {
    insert(paths[i % pathCount]!, c, 1);
  });

  return new Promise((resolve) => {
    const finish = () => {
      if (finished) return;
      finished = true;
      cancelHedge?.();
      const answered: Candidate[] = [];
      const asked: Candidate[] = [];
      for (const p of paths)
        for (const c of p.shortlist) {
          if (c.state === 'answered') answered.push(c);
          if (c.state === 'answered' || c.state === 'failed' || c.state === 'silent') asked.push(c);
        }
      if (params.self) asked.push({ contact: params.self, hop: 0, state: 'answered' });
      const byDistance = (a: Candidate, b: Candidate) =>
        compareDistance(target, a.contact.id, b.contact.id);
      answered.sort(byDistance);
      result.closest = answered.slice(0, k).map((c) => c.contact);
      const closestAsked = asked.sort(byDistance).slice(0, k);
      result.closestAsked = closestAsked.length;
      result.closestSilent = closestAsked.filter((c) => c.state === 'silent').length;
      if (quorum === 0) result.hops = answered[0]?.hop ?? 0;
      resolve(result);
    };

    /** The next contact this path should ask, or undefined when the k closest live ones are done. */
    const next = (path: Path): Candidate | undefined => {
      let live = 0;
      for (const c of path.shortlist) {
        if (c.state === 'failed' || c.state === 'silent') continue;
        if (c.state === 'new') return c;
        if (++live >= k) return undefined;
      }
      return undefined;
    };

    const pump = (path: Path): void => {
      while (!finished && room(path) && result.requests < maxRequests) {
        const c = next(path);
        if (!c) break;
        c.state = 'pending';
        path.inFlight++;
        result.requests++;
        params.query(c.contact).then(
          (answer) => onAnswer(path, c, answer),
          (err: unknown) => onFailure(path, c, err instanceof TimeoutError),
        );
      }
      if (!finished && paths.every(settled)) finish();
    };

    /**
     * A path is settled when nothing is in flight, or when its k closest live contacts have
     * all answered: requests still out to farther contacts cannot change the result, so a dead
     * node's timeout does not hold the lookup up.
     */
    const settled = (path: Path): boolean => {
      if (path.inFlight === 0) return true;
      let answered = 0;
      for (const c of path.shortlist) {
        if (c.state === 'failed' || c.state === 'silent') continue;
        if (c.state !== 'answered') return false;
        if (++answered >= k) return true;
      }
      return false;
    };

    const onAnswer = (path: Path, c: Candidate, answer: QueryAnswer): void => {
      path.inFlight--;
      if (finished) return;
      c.state = 'answered';
      const hasValues = quorum > 0 && answer.values !== undefined && answer.values.length > 0;
      if (params.trace) {
        result.trace.push({
          contact: c.contact,
          hop: c.hop,
          path: path.index,
          outcome: hasValues ? 'value' : 'nodes',
          returned: answer.contacts.length,
        });
      }
      if (hasValues) {
        if (holders === 0) result.hops = c.hop;
        holders++;
        for (const v of answer.values!) result.values.push({ ...v, holder: c.contact });
        if (holders >= quorum) {
          finish();
          return;
        }
      }
      for (const nc of answer.contacts) insert(path, nc, c.hop + 1);
      if (hasValues && hedge && !hedged && !cancelHedge) {
        const { afterMs, schedule } = hedge;
        cancelHedge = schedule(() => {
          hedged = true;
          for (const p of paths) pump(p);
        }, afterMs);
      }
      for (const p of paths) pump(p);
      // After the pump: the next requests are out before the caller spends time on these. Not
      // when the pump found the lookup done: then nothing is left to wait for.
      if (hasValues && !finished && params.onValues) {
        try {
          params.onValues(answer.values!, c.contact);
        } catch {
          // The caller's bug; the lookup goes on without it.
        }
      }
    };

    const onFailure = (path: Path, c: Candidate, silent: boolean): void => {
      path.inFlight--;
      if (finished) return;
      result.failures++;
      c.state = silent ? 'silent' : 'failed';
      if (params.trace) {
        result.trace.push({
          contact: c.contact,
          hop: c.hop,
          path: path.index,
          outcome: 'failed',
          returned: 0,
        });
      }
      pump(path);
    };

    for (const p of paths) pump(p);
  });
}
