// overlay-core: not implemented yet; see the open issues.
export {};
