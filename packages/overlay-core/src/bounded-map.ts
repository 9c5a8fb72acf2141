// Maps that must not grow without end (caches, replay memories): a full one drops its oldest
// entry to make room.

/** Sets `key` in a map of at most `max` entries; a key set again counts as the newest. */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  if (map.size >= max) {
    const oldest = map.keys().next();
    if (!oldest.done) map.delete(oldest.value);
  }
  map.set(key, value);
}
