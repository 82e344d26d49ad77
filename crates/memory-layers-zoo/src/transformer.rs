use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear, RmsNorm, RmsNormConfig, RotaryEncoding, RotaryEncodingConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use memory_layers_nn::{MemoryError, MemoryOutput, ValueStore, ValueTable};

use crate::attention::KvCache;
use crate::init::{linear, trunc_normal};
use crate::rope::RopeTables;
use crate::rows::on_rows;
use crate::{Block, Ffn, ModelKind, TransformerConfig, ZooBackend, ZooError};

/// A decoder-only language model.
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    /// Token embeddings `[vocab, dim]`.
    pub embedding: Embedding<B>,
    /// The blocks.
    pub blocks: Vec<Block<B>>,
    /// Final norm.
    pub norm: RmsNorm<B>,
    /// Output head `dim → vocab` (untied).
    pub output: Linear<B>,
    /// The value pool shared by every memory layer (Memory, Memory+).
    pub pool: Option<ValueTable<B>>,
    rope: RotaryEncoding<B>,
    max_seq_len: usize,
}

/// Logits and what the model reports with them.
#[derive(Debug, Clone)]
pub struct ModelOutput<B: Backend> {
    /// `[B, T, vocab]`.
    pub logits: Tensor<B, 3>,
    /// Sum of auxiliary losses (MoE load balancing), if any.
    pub aux_loss: Option<Tensor<B, 1>>,
    /// Output and retrieval of every product-key layer, with its block index.
    pub memory: Vec<(usize, MemoryOutput<B, 3>)>,
}

impl TransformerConfig {
    /// Builds the model: truncated normal weights `std = dim^-½` for the transformer, the
    /// memory layers' own rules for theirs. Initialisation runs in a fixed order (pool, blocks,
    /// embedding, output head) so that a seeded run draws the same numbers.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<Transformer<B>, ZooError> {
        self.validate()?;
        let d = self.dim;
        let std = (d as f64).powf(-0.5);
        let pool = match self.kind {
            ModelKind::Memory | ModelKind::MemoryPlus => {
                Some(self.memory_layer().init_values(device)?)
            }
            _ => None,
        };
        let blocks = (0..self.layers)
            .map(|layer| self.block(layer).init(device))
            .collect::<Result<Vec<_>, _>>()?;
        let embedding = Embedding {
            weight: Param::from_tensor(trunc_normal([self.vocab_size, d], std, device)),
        };
        let rope = RotaryEncodingConfig::new(self.max_seq_len, self.head_dim())
            .with_theta(self.rope_theta as f32)
            .init(device);
        Ok(Transformer {
            embedding,
            blocks,
            norm: RmsNormConfig::new(d)
                .with_epsilon(self.norm_eps)
                .init(device),
            output: linear(d, self.vocab_size, std, device),
            pool,
            rope,
            max_seq_len: self.max_seq_len,
        })
    }
}

impl<B: Backend> Transformer<B> {
    /// The longest sequence the model reads (its RoPE tables' length).
    pub fn max_seq_len(&self) -> usize {
        self.max_seq_len
    }

    /// The value tables: the shared pool, then each PEER layer's two expert tables.
    pub fn value_tables(&self) -> Vec<&ValueTable<B>> {
        let mut tables: Vec<_> = self.pool.iter().collect();
        for block in &self.blocks {
            if let Ffn::Peer(peer) = &block.ffn {
                tables.extend([&peer.values_u, &peer.values_v]);
            }
        }
        tables
    }

    /// [`value_tables`](Self::value_tables), mutably.
    pub fn value_tables_mut(&mut self) -> Vec<&mut ValueTable<B>> {
        let mut tables: Vec<_> = self.pool.iter_mut().collect();
        for block in &mut self.blocks {
            if let Ffn::Peer(peer) = &mut block.ffn {
                tables.extend([&mut peer.values_u, &mut peer.values_v]);
            }
        }
        tables
    }
}

impl<B: ZooBackend> Transformer<B> {
    /// Fails if a lookup since the last call had an index outside its table. Device backends
    /// defer that check to keep lookups free of reads (`ValueTable::check_pending`): callers
    /// run it once per step, per validation batch and per generated token.
    pub fn check_value_ranges(&self) -> Result<(), ZooError> {
        for table in self.value_tables() {
            table.check_pending().map_err(MemoryError::from)?;
        }
        Ok(())
    }

    /// Logits for `tokens [B, T]` (every id below the vocabulary size).
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Result<ModelOutput<B>, ZooError> {
        self.run(tokens, None, None)
    }

    /// [`forward`](Self::forward) with the memory layers reading `values` instead of the
    /// model's pool: a view of the pool sharded over devices (parallel memory) keeps the
    /// model's own parameters and changes where the lookups run.
    pub fn forward_with_values(
        &self,
        tokens: Tensor<B, 2, Int>,
        values: &dyn ValueStore<B>,
    ) -> Result<ModelOutput<B>, ZooError> {
        self.run(tokens, None, Some(values))
    }

    /// Logits for `tokens [B, T]` continuing the positions in `caches` (one per block; empty
    /// caches start a sequence), which are extended.
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        caches: &mut [KvCache<B>],
    ) -> Result<ModelOutput<B>, ZooError> {
        self.run(tokens, Some(caches), None)
    }

    /// Fresh caches for [`Transformer::forward_cached`].
    pub fn new_caches(&self) -> Vec<KvCache<B>> {
        vec![KvCache::default(); self.blocks.len()]
    }

    fn run(
        &self,
        tokens: Tensor<B, 2, Int>,
        mut caches: Option<&mut [KvCache<B>]>,
        values: Option<&dyn ValueStore<B>>,
    ) -> Result<ModelOutput<B>, ZooError> {
        let values = values.or(self.pool.as_ref().map(|p| p as &dyn ValueStore<B>));
        let [_, t] = tokens.dims();
        let start = caches
            .as_ref()
            .and_then(|c| c.first())
            .map_or(0, |c| c.len());
        if start + t > self.max_seq_len {
            return Err(ZooError::SequenceTooLong {
                len: start + t,
                max: self.max_seq_len,
            });
        }
        let rope = RopeTables::new(&self.rope, start, t);
        let mut h = self.embedding.forward(tokens);
        let mut aux_loss: Option<Tensor<B, 1>> = None;
        let mut memory = Vec::new();
        for (i, block) in self.blocks.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            h = h.clone()
                + block
                    .attention
                    .forward(block.attn_norm.forward(h), &rope, cache);
            let out = block
                .ffn
                .forward(block.ffn_norm.forward(h.clone()), values)?;
            h = h + out.output;
            if let Some(aux) = out.aux_loss {
                aux_loss = Some(match aux_loss {
                    Some(total) => total + aux,
                    None => aux,
                });
            }
            if let Some(out) = out.memory {
                memory.push((i, out));
            }
        }
        Ok(ModelOutput {
            logits: on_rows(self.norm.forward(h), |h| self.output.forward(h)),
            aux_loss,
            memory,
        })
    }
}
