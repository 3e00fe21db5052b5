//! WaaV Gateway providers for google (in progress).
