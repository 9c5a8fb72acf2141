// sip-adapter: not implemented yet; see the open issues.
export {};
