use memory_layers_keys::RetrievalBackend;
use memory_layers_values::ValueBackend;

/// Every backend extension a memory layer needs.
pub trait MemoryBackend: RetrievalBackend + ValueBackend {}

impl<B: RetrievalBackend + ValueBackend> MemoryBackend for B {}
