// An empty module, bundled like the others (banner included): the floor of the import-time measurement.
export {};
