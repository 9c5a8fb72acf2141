// cli: not implemented yet; see the open issues.
export {};
