// Maps that must not grow without end: caches and replay memories, where a full one drops its
// oldest entry to make room, and counts per key, where a key whose count falls to 0 goes.

/** Sets `key` in a map of at most `max` entries; a key set again counts as the newest. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}

/** Adds `delta` to the count of `key` (0 when absent) and returns it; a count of 0 leaves. */
export function addCount<K>(map: Map<K, number>, key: K, delta: number): number {
  const n = (map.get(key) ?? 0) + delta;
  if (n > 0) map.set(key, n);
  else map.delete(key);
  return n;
}
