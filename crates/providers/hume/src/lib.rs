//! WaaV Gateway providers for hume (in progress).
