// Placeholder until the first format source lands.
