// Publishes a user's local bindings to the overlay as this node's SIP-REGISTRATION entry, and
// only when it matters: a new or gone device, or bindings that will outlive the published
// record by more than half its lifetime. A phone refreshing every few minutes costs no
// overlay write; the last device leaving publishes a short tombstone.

import type { Clock } from '@peerbx/dht-kademlia';
import { KIND_SIP_REGISTRATION, type StoredRecord } from '@peerbx/overlay-core';
import { RegistrarBusyError } from '../errors.js';
import type { Binding } from '../registrar/binding-store.js';
import { Admission } from './admission.js';
import type { OverlayAccess } from './overlay-access.js';
import { decodeRegistrationValue, encodeRegistrationValue } from './registration-value.js';

/**
 * A removed registration stays visible as a tombstone this long at least, so caches learn of
 * it; and as long as the record it replaces would have lived, else a holder that missed the
 * removal (it was away) would bring the old record back once the tombstone lapsed elsewhere.
 */
export const TOMBSTONE_LIFETIME_MS = 120_000;

/**
 * Overlay writes under way at once. More wait their turn: started together, every write would
 * slow the others down until their DHT requests time out and are sent again, and the node would
 * take fewer registrations the more it is offered.
 */
export const MAX_WRITES_IN_FLIGHT = 16;
/**
 * REGISTERs whose writes may wait (a burst of phones after a power cut, 10 s of new users at
 * the rate a 2-core node writes). Beyond, a REGISTER that needs a write is refused at once
 * (503 with Retry-After).
 */
export const MAX_WRITES_WAITING = 2000;
/**
 * A REGISTER's write that waited this long is given up, its REGISTER answered 503: the phone's
 * transaction (Timer F, 32 s) is about to end, and the phone will try again.
 */
export const MAX_WRITE_WAIT_MS = 20_000;

export interface PublisherLimits {
  maxInFlight?: number;
  maxWaiting?: number;
  maxWaitMs?: number;
}

interface Published {
  devices: number;
  expiresAt: number;
  lifetimeMs: number;
}

export interface PublishDecision {
  write: boolean;
  reason: 'new' | 'devices-changed' | 'extends' | 'removed' | 'unchanged';
}

export class RegistrationPublisher {
  private readonly published = new Map<string, Published>();
  /** AORs whose restore (after a restart) has not written yet: not renewed meanwhile. */
  private readonly restoring = new Set<string>();
  /**
   * Per AOR, the end of its last write: writes of one AOR never overlap (a background write
   * and a REGISTER's), so the overlay keeps whichever was asked for last.
   */
  private readonly lastWrite = new Map<string, Promise<void>>();
  /** Overlay writes made, for statistics and tests. */
  writes = 0;
  /**
   * REGISTERs' writes in arrival order; background writes (bindings restored at start) when
   * none of those waits. A REGISTER's write is refused with RegistrarBusyError when
   * maxWaiting wait already, or when it waited over maxWaitMs.
   */
  private readonly admission: Admission;

  constructor(
    private readonly overlay: OverlayAccess,
    private readonly clock: Clock,
    limits: PublisherLimits = {},
  ) {
    this.admission = new Admission(
      clock,
      {
        maxInFlight: limits.maxInFlight ?? MAX_WRITES_IN_FLIGHT,
        maxWaiting: limits.maxWaiting ?? MAX_WRITES_WAITING,
        maxWaitMs: limits.maxWaitMs ?? MAX_WRITE_WAIT_MS,
      },
      (waiting) => new RegistrarBusyError(waiting),
    );
  }

  /** Overlay writes under way and waiting (REGISTERs' and background ones). */
  get pending(): { inFlight: number; waiting: number; background: number } {
    return this.admission.pending;
  }

  /** REGISTERs refused because too many writes were waiting, or theirs waited too long. */
  get busyRefusals(): number {
    return this.admission.refusals;
  }

  /** What publishing these bindings would do, without doing it. */
  decide(aor: string, bindings: readonly Binding[]): PublishDecision {
    const prev = this.published.get(aor);
    if (bindings.length === 0)
      return prev && prev.devices > 0
        ? { write: true, reason: 'removed' }
        : { write: false, reason: 'unchanged' };
    if (!prev || prev.devices === 0) return { write: true, reason: 'new' };
    if (prev.devices !== bindings.length) return { write: true, reason: 'devices-changed' };
    const until = Math.max(...bindings.map((b) => b.expiresAt));
    if (until - prev.expiresAt > prev.lifetimeMs / 2) return { write: true, reason: 'extends' };
    return { write: false, reason: 'unchanged' };
  }

  /**
   * Brings the overlay up to date with an AOR's bindings. Throws the overlay's error (say
   * ERR_FORBIDDEN: the name belongs to another key), which the registrar turns into a 403, or
   * RegistrarBusyError when the write would have to wait behind too many others (or waited
   * too long).
   */
  async sync(
    aor: string,
    resource: string,
    bindings: readonly Binding[],
  ): Promise<PublishDecision> {
    const decision = this.decide(aor, bindings);
    if (!decision.write) return decision;
    await this.admission.run(() => this.inTurn(aor, () => this.write(aor, resource, bindings)));
    return decision;
  }

  /**
   * After a restart: the AOR's bindings were published before. They count as published (a
   * removal then writes a tombstone), as `saved`, the record this node wrote before it stopped,
   * which the overlay stores again (OverlayNode.ownRecords); without one, as a record that
   * lapses now. A background write, once no REGISTER waits, then publishes whatever the
   * bindings are by then if that record does not cover them (see decide), unless a REGISTER
   * did so first.
   */
  async restore(
    aor: string,
    resource: string,
    current: () => readonly Binding[],
    saved: Promise<StoredRecord | undefined> = Promise.resolve(undefined),
  ): Promise<void> {
    const unknown: Published = {
      devices: current().length,
      expiresAt: this.clock.now(),
      lifetimeMs: 0,
    };
    this.published.set(aor, unknown);
    this.restoring.add(aor);
    try {
      const before = registrationOf(await saved.catch(() => undefined));
      if (before && this.published.get(aor) === unknown) this.published.set(aor, before);
      await this.admission.run(
        () =>
          this.inTurn(aor, async () => {
            // Decided only now: a REGISTER may have written (or removed) the bindings meanwhile.
            const bindings = current();
            if (this.decide(aor, bindings).write) await this.write(aor, resource, bindings);
          }),
        true,
      );
    } finally {
      this.restoring.delete(aor);
    }
  }

  /**
   * AORs with devices whose record lapses within `withinMs` of `now` (or has lapsed), except
   * those a restore is about to write.
   */
  lapsing(now: number, withinMs: number): string[] {
    const due: string[] = [];
    for (const [aor, p] of this.published) {
      if (p.devices > 0 && p.expiresAt - now <= withinMs && !this.restoring.has(aor)) {
        due.push(aor);
      }
    }
    return due;
  }

  /**
   * Writes the AOR's record again when its bindings (`current()`, read when its turn comes)
   * outlive it: refreshes answered here do not extend it. A background write, behind the
   * REGISTERs' ones, and ordered with the AOR's other writes; nothing is queued when nothing
   * outlives the record. An AOR whose bindings are all gone is left to lapse, and forgotten.
   * The record keeps the lifetime it was written with (see decide): a phone refreshing at
   * half its Expires then costs one write a cycle, not a renewal and a refresh 30 s apart.
   */
  async renew(aor: string, resource: string, current: () => readonly Binding[]): Promise<boolean> {
    const due = (): Published | undefined => {
      const prev = this.published.get(aor);
      if (!prev || prev.devices === 0) return undefined;
      const bindings = current();
      if (bindings.length === 0) {
        if (prev.expiresAt <= this.clock.now()) this.published.delete(aor);
        return undefined;
      }
      return Math.max(...bindings.map((b) => b.expiresAt)) > prev.expiresAt ? prev : undefined;
    };
    if (!due()) return false;
    let wrote = false;
    await this.admission.run(
      () =>
        this.inTurn(aor, async () => {
          const prev = due();
          if (!prev) return;
          await this.write(aor, resource, current());
          const now = this.published.get(aor);
          if (now) now.lifetimeMs = Math.max(now.lifetimeMs, prev.lifetimeMs);
          wrote = true;
        }),
      true,
    );
    return wrote;
  }

  /** Runs `task` after the AOR's previous write ended (whether it succeeded or not). */
  private inTurn(aor: string, task: () => Promise<void>): Promise<void> {
    const previous = this.lastWrite.get(aor) ?? Promise.resolve();
    const mine = previous.then(task, task);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    this.lastWrite.set(aor, settled);
    void settled.then(() => {
      if (this.lastWrite.get(aor) === settled) this.lastWrite.delete(aor);
    });
    return mine;
  }

  private async write(aor: string, resource: string, bindings: readonly Binding[]): Promise<void> {
    const now = this.clock.now();
    const devices = bindings.length;
    const replaced = this.published.get(aor)?.expiresAt ?? 0;
    const expiresAt =
      devices > 0
        ? Math.max(...bindings.map((b) => b.expiresAt))
        : Math.max(now + TOMBSTONE_LIFETIME_MS, replaced);
    const lifetimeMs = Math.max(1000, expiresAt - now);
    await this.overlay.publish({
      kind: KIND_SIP_REGISTRATION,
      resource,
      dictionaryKey: this.overlay.nodeId,
      value: devices > 0 ? encodeRegistrationValue({ devices, expiresAt }) : new Uint8Array(0),
      lifetimeMs,
    });
    this.writes++;
    // A removal's tombstone needs no renewal, nor counts for what is written next (decide
    // takes no entry as no devices): a user gone for good leaves nothing behind.
    if (devices > 0) this.published.set(aor, { devices, expiresAt, lifetimeMs });
    else this.published.delete(aor);
  }

  /** Users whose registrations this node keeps in the overlay (diagnostics and tests). */
  get tracked(): number {
    return this.published.size;
  }
}

/** A registration record as what it published: devices, until when, and its lifetime. */
function registrationOf(record: StoredRecord | undefined): Published | undefined {
  if (!record || record.value.length === 0) return undefined;
  try {
    const { devices, expiresAt } = decodeRegistrationValue(record.value);
    return { devices, expiresAt, lifetimeMs: record.lifetimeMs };
  } catch {
    return undefined;
  }
}
