//! WaaV Gateway providers for azure (in progress).
