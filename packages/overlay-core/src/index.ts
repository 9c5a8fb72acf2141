// @peerbx/overlay-core: the DHT made safe for a company's phone book. Identities and the
// crypto puzzle, the overlay configuration, signed messages, stored records with access
// control, LevelDB persistence, authenticated stream links, and the OverlayNode that runs them.

export { setBounded } from './bounded-map.js';
export { OverlayClient, type OverlayClientOptions } from './client.js';
export { CLIENT_APPLICATION } from './client-protocol.js';
export {
  type AccessPolicy,
  canonicalConfigBytes,
  checkConfigSignature,
  configHash,
  type DataModel,
  DEFAULT_KINDS,
  type DhtParameters,
  defaultOverlayConfig,
  type EnrollmentMode,
  type KindDefinition,
  kindById,
  type OverlayConfig,
  signOverlayConfig,
  validateOverlayConfig,
} from './config/overlay-config.js';
export * from './constants.js';
export { OverlayError, type OverlayErrorCode } from './errors.js';
export {
  type CertificateVerdict,
  decodeCertificate,
  encodeCertificate,
  issueCertificate,
  type UserCertificate,
  verifyCertificate,
} from './identity/certificate.js';
export {
  assertUserName,
  type DataDirPaths,
  dataDirDamage,
  dataDirPaths,
  ensureDataDir,
  exportUserKey,
  isUserName,
  loadNodeKey,
  loadUserKey,
  lockDataDir,
  readSavedConfig,
  USER_NAME_RULE,
  userCertificatePath,
  userKeyOf,
  userKeyPath,
  writeSavedConfig,
} from './identity/data-dir.js';
export { writeFileDurably, writeFileDurablyAsync } from './identity/durable-file.js';
export { loadOrCreateKeyFile, readKeyFile, writeKeyFile } from './identity/key-file.js';
export {
  derivedUserKeys,
  exportPrivateKey,
  generateKeyPair,
  generateNodeKeyPair,
  importPrivateKey,
  type KeyPair,
  keyPairFromSeed,
  meetsPuzzle,
  nodeIdOf,
  sign,
  verify,
} from './identity/keys.js';
export {
  Channel,
  type ChannelHandler,
  isLoopbackHost,
  Link,
  type LinkInfo,
} from './links/link.js';
export {
  LinkManager,
  type LinkManagerOptions,
  type LinkManagerStats,
} from './links/link-manager.js';
export { type Logger, silentLogger } from './logger.js';
export {
  type ListenAddress,
  OverlayNode,
  type OverlayNodeOptions,
  type OverlayStats,
  type PingResult,
  type PublishParams,
  type PublishResult,
  SOFTWARE_VERSION,
} from './overlay.js';
export { decodeNodeInfo, encodeNodeInfo, type NodeInfo } from './storage/node-info.js';
export { PersistentStore } from './storage/persistent-store.js';
export {
  createRecord,
  decodeRecord,
  encodeRecord,
  isTombstone,
  recordExpiresAt,
  recordSlot,
  resourceId,
  type StoredRecord,
  userPartOf,
} from './storage/record.js';
export {
  createOverlayStoreOptions,
  createRecordValidator,
  type FetchedValue,
  type Responsibility,
  verifyFetched,
} from './storage/record-store.js';
export { type RejectReason, SignedDatagramCodec } from './transport/signed-codec.js';
