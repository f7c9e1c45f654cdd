"""Keys and ciphers, crypto-shredding, and (later) consent, exports, retention and access audit."""
