//! WaaV Gateway providers for aws (in progress).
