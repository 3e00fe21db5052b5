//! WaaV Gateway providers for playht (in progress).
