//! WaaV Gateway providers for lmnt (in progress).
