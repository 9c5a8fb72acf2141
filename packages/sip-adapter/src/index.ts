// sip-adapter public API. So far: the SIP message module every other part (transport,
// transaction, registrar, proxy) builds on.

export {
  type AuthFailure,
  type AuthOutcome,
  type AuthRole,
  DigestAuthenticator,
  type DigestAuthenticatorOptions,
  type SipUserCredentials,
  type SipUsers,
} from './auth/authenticator.js';
export * from './auth/constants.js';
export {
  type ChallengeInput,
  type Credentials,
  formatChallenge,
  parseCredentials,
} from './auth/credentials-header.js';
export {
  baseAlgorithm,
  computeDigestResponse,
  computeHa1,
  type DigestAlgorithm,
  type DigestResponseInput,
  digestHash,
  OFFERED_ALGORITHMS,
  parseAlgorithm,
} from './auth/digest.js';
export { type NonceCheck, NonceIssuer, type NonceOptions } from './auth/nonce.js';
export { type AuthMode, authRequired, isLoopbackHost } from './auth/policy.js';
export * from './constants.js';
export {
  LocatorBusyError,
  RegistrarBusyError,
  SipError,
  type SipErrorCode,
  SipParseError,
  type SipParseErrorOptions,
} from './errors.js';
export { type SipHeaderField, SipHeaders, splitList } from './message/header-list.js';
export { COMPACT_FORMS, headerKey } from './message/header-names.js';
export {
  type ContactList,
  type CSeq,
  contactExpires,
  contactQ,
  formatCSeq,
  parseContacts,
  parseCSeq,
  parseExpires,
  parseMaxForwards,
  parseRoutes,
} from './message/headers.js';
export {
  generateBranch,
  generateCallId,
  generateTag,
  isRfc3261Branch,
  type RandomBytes,
} from './message/ids.js';
export { type Params, quote, unquote } from './message/lexer.js';
export {
  type CreateResponseOptions,
  createBadRequest,
  createResponse,
  REASON_PHRASES,
  reasonPhrase,
} from './message/response.js';
export {
  type HeaderInit,
  type ParseOptions,
  parseSipMessage,
  type SipMessage,
  SipRequest,
  type SipRequestInit,
  SipResponse,
  type SipResponseInit,
  serialize,
  sipMessageLength,
} from './message/sip-message.js';
export {
  type AbsoluteUri,
  type CreateViaOptions,
  createVia,
  formatNameAddr,
  formatUri,
  formatVia,
  isSipUri,
  type NameAddr,
  parseNameAddr,
  parseNameAddrList,
  parseUri,
  parseVia,
  type SipUri,
  type Uri,
  type Via,
} from './message/uri.js';
export { loadRouteSecret } from './node/node-secret.js';
export { OverlayFlows, type OverlayFlowsOptions, SIP_APPLICATION } from './node/overlay-flows.js';
export {
  SipNode,
  type SipNodeOptions,
  type SipNodeOverlay,
  type SipNodeStats,
} from './node/sip-node.js';
export {
  LOCATION_CACHE_MS,
  type Location,
  Locator,
} from './overlay-bridge/locator.js';
export type { OverlayAccess } from './overlay-bridge/overlay-access.js';
export {
  type PublishDecision,
  RegistrationPublisher,
  TOMBSTONE_LIFETIME_MS,
} from './overlay-bridge/registration-publisher.js';
export {
  decodeRegistrationValue,
  encodeRegistrationValue,
  type RegistrationValue,
} from './overlay-bridge/registration-value.js';
export * from './proxy/constants.js';
export { isLoop, loopHash, proxyBranch } from './proxy/loop-detection.js';
export { formatNodeRoute, nodeOfUri, type RouteAddress } from './proxy/node-route.js';
export {
  type NextHop,
  type ProxyComponents,
  type ProxyStats,
  StatefulProxy,
} from './proxy/proxy.js';
export {
  type Branch,
  ResponseContext,
  type ResponseContextOptions,
} from './proxy/response-context.js';
export {
  type Binding,
  BindingStore,
  type BindingStoreOptions,
  type ContactInput,
  type Flow,
  type RegisterInput,
  type RegisterOutcome,
} from './registrar/binding-store.js';
export type { BindingsPersistence } from './registrar/bindings-persistence.js';
export { BINDINGS_FILE } from './registrar/constants.js';
export {
  FileBindingsStore,
  type FileBindingsStoreOptions,
} from './registrar/file-bindings-store.js';
export { LOCAL_HOST_ALIASES, REGISTER_RETRY_AFTER_S } from './registrar/handler-constants.js';
export {
  type AorResult,
  isLocalDomain,
  RegisterHandler,
  type RegisterHandlerOptions,
  type RegistrationSync,
} from './registrar/register-handler.js';
export * from './transaction/index.js';
export * from './transport/index.js';
