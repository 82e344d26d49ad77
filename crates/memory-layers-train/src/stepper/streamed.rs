//! The value tables' row-wise optimizer records written one tensor at a time. Burn's recorder
//! turns a whole record into serialisable data before it writes a byte: for the AdamW moments
//! of the 134m pool, a 6 GiB copy beside the 6 GiB it saves, the peak of a run. This writer
//! copies one tensor at a time into the same bytes, so Burn's own recorder loads the file.

use std::path::PathBuf;

use burn::record::{BurnRecord, Record as _, RecorderError};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use memory_layers_values::RowOptimizerRecord;
use serde::ser::{Serialize, SerializeSeq, SerializeStruct, Serializer};

use crate::checkpoint::Recorder;

/// Writes `records` as `Recorder::record(records, path)` would, one tensor copied at a time.
pub(crate) fn save_rows<B: Backend>(
    records: Vec<RowOptimizerRecord<B>>,
    path: PathBuf,
) -> Result<(), RecorderError> {
    let item = BurnRecord::<_, B>::new::<Recorder>(Rows(records));
    <Recorder as burn::record::Recorder<B>>::save_item(&Recorder::default(), item, path)
}

/// The records, serialised as the `Vec` of their derived record items.
struct Rows<B: Backend>(Vec<RowOptimizerRecord<B>>);

impl<B: Backend> Serialize for Rows<B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for record in &self.0 {
            seq.serialize_element(&Row(record))?;
        }
        seq.end()
    }
}

/// One record, as the item `#[derive(Record)]` makes: its fields in order.
struct Row<'a, B: Backend>(&'a RowOptimizerRecord<B>);

impl<B: Backend> Serialize for Row<'_, B> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let record = self.0;
        let mut item = serializer.serialize_struct("RowOptimizerRecordItem", 4)?;
        item.serialize_field("m", &Lazy(record.m.as_ref()))?;
        item.serialize_field("v", &Lazy(record.v.as_ref()))?;
        item.serialize_field("acc", &Lazy(record.acc.as_ref()))?;
        item.serialize_field("steps", &record.steps)?;
        item.end()
    }
}

/// An optional tensor, turned into Burn's record item (a copy of its data) only while it is
/// written.
struct Lazy<'a, B: Backend, const D: usize>(Option<&'a Tensor<B, D>>);

impl<B: Backend, const D: usize> Serialize for Lazy<'_, B, D> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        type Settings<B> = <Recorder as burn::record::Recorder<B>>::Settings;
        match self.0 {
            None => serializer.serialize_none(),
            Some(tensor) => serializer.serialize_some(&tensor.clone().into_item::<Settings<B>>()),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::record::Recorder as _;
    use burn::tensor::Distribution;

    use super::*;

    #[test]
    fn the_streamed_file_is_burns_byte_for_byte() {
        let device = Default::default();
        let random = |shape: [usize; 2]| {
            Tensor::<Flex, 2>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        let records = vec![
            RowOptimizerRecord {
                m: Some(random([37, 5])),
                v: Some(random([37, 5])),
                acc: None,
                steps: 12,
            },
            RowOptimizerRecord {
                m: None,
                v: None,
                acc: Some(Tensor::random([19], Distribution::Default, &device)),
                steps: 3,
            },
            RowOptimizerRecord {
                m: None,
                v: None,
                acc: None,
                steps: 0,
            },
        ];
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (burns, ours) = (dir.join("burn"), dir.join("ours"));
        Recorder::default()
            .record(records.clone(), burns.clone())
            .unwrap();
        save_rows(records.clone(), ours.clone()).unwrap();
        let read = |path: &PathBuf| std::fs::read(path.with_extension("bin")).unwrap();
        assert_eq!(read(&ours), read(&burns));
        let back: Vec<RowOptimizerRecord<Flex>> = Recorder::default().load(ours, &device).unwrap();
        let m = back[0].m.clone().unwrap().into_data();
        m.assert_eq(&records[0].m.clone().unwrap().into_data(), true);
        assert_eq!((back[0].steps, back[1].steps), (12, 3));
    }
}
