//! Interaction sequences and the leave-one-out split.
//!
//! Every rating is an implicit interaction. Rare movies are dropped first (by count over all
//! ratings, on item indices), then users with too few interactions. Each user's history is in
//! (timestamp, movie id) order; the last item is the test item, the one before it the
//! validation item, the rest is training data.

use std::collections::HashMap;

use crate::catalogue::Interaction;
use crate::model::ItemVocab;
use crate::model::checkpoint::DataSettings;

/// One user's items (indices into the vocabulary), oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct UserHistory {
    pub user_id: i64,
    pub items: Vec<u32>,
}

/// The movies that survived filtering and the users' histories over them.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub vocab: ItemVocab,
    pub users: Vec<UserHistory>,
}

/// One user of the leave-one-out split.
#[derive(Debug, Clone, PartialEq)]
pub struct SplitUser {
    pub user_id: i64,
    pub train: Vec<u32>,
    pub valid: u32,
    pub test: u32,
}

impl SplitUser {
    /// The validation case: input the training items, predict the validation item.
    pub fn valid_history(&self) -> &[u32] {
        &self.train
    }

    /// The test case: input the training items and the validation item, predict the test item.
    pub fn test_history(&self) -> Vec<u32> {
        let mut h = self.train.clone();
        h.push(self.valid);
        h
    }
}

/// Builds the dataset from ratings, with the filters of `settings`.
pub fn build_dataset(interactions: &[Interaction], settings: &DataSettings) -> Dataset {
    let mut sorted: Vec<&Interaction> = interactions
        .iter()
        .filter(|i| settings.min_rating.is_none_or(|m| i.rating >= m))
        .collect();
    sorted.sort_by_key(|i| (i.user_id, i.timestamp, i.movie_id));

    // Rare movies first, counted on item indices.
    let all = ItemVocab::new(sorted.iter().map(|i| i.movie_id).collect());
    let mut counts = vec![0usize; all.len()];
    for i in &sorted {
        if let Some(ix) = all.index_of(i.movie_id) {
            counts[ix as usize] += 1;
        }
    }
    let kept: Vec<i64> = all
        .movie_ids()
        .iter()
        .zip(&counts)
        .filter(|&(_, &c)| c >= settings.min_item_count)
        .map(|(&m, _)| m)
        .collect();
    let vocab = ItemVocab::new(kept);

    let min_len = settings.min_seq_len.max(3);
    let mut users = Vec::new();
    let mut current: Option<UserHistory> = None;
    for i in sorted {
        let Some(ix) = vocab.index_of(i.movie_id) else {
            continue;
        };
        match current.as_mut() {
            Some(u) if u.user_id == i.user_id => u.items.push(ix),
            _ => {
                if let Some(u) = current.take().filter(|u| u.items.len() >= min_len) {
                    users.push(u);
                }
                current = Some(UserHistory {
                    user_id: i.user_id,
                    items: vec![ix],
                });
            }
        }
    }
    if let Some(u) = current.filter(|u| u.items.len() >= min_len) {
        users.push(u);
    }
    Dataset { vocab, users }
}

/// The leave-one-out split of every user (each has at least three items).
pub fn leave_one_out(dataset: &Dataset) -> Vec<SplitUser> {
    dataset
        .users
        .iter()
        .filter(|u| u.items.len() >= 3)
        .map(|u| {
            let n = u.items.len();
            SplitUser {
                user_id: u.user_id,
                train: u.items[..n - 2].to_vec(),
                valid: u.items[n - 2],
                test: u.items[n - 1],
            }
        })
        .collect()
}

/// Interactions per item over the training parts only.
pub fn train_popularity(split: &[SplitUser], items: usize) -> Vec<u32> {
    let mut counts = vec![0u32; items];
    for u in split {
        for &i in &u.train {
            counts[i as usize] += 1;
        }
    }
    counts
}

/// The split in MovieLens ids, keyed by user: `(train, valid, test)`.
pub fn split_movie_ids(
    split: &[SplitUser],
    vocab: &ItemVocab,
) -> HashMap<i64, (Vec<i64>, i64, i64)> {
    let id = |i: u32| vocab.movie_id(i).unwrap_or(-1);
    split
        .iter()
        .map(|u| {
            (
                u.user_id,
                (
                    u.train.iter().map(|&i| id(i)).collect(),
                    id(u.valid),
                    id(u.test),
                ),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ia(user_id: i64, movie_id: i64, rating: f32, timestamp: i64) -> Interaction {
        Interaction {
            user_id,
            movie_id,
            rating,
            timestamp,
        }
    }

    #[test]
    fn leave_one_out_on_a_handcrafted_example() {
        // User 1: ties at t=10 break by movie id; user 2 has too few items; movie 99 is rare.
        let data = vec![
            ia(1, 30, 4.0, 10),
            ia(1, 20, 3.0, 10),
            ia(1, 1, 5.0, 5),
            ia(1, 40, 2.0, 20),
            ia(1, 99, 2.0, 30),
            ia(1, 50, 1.0, 40),
            ia(2, 20, 4.0, 1),
            ia(2, 30, 4.0, 2),
            ia(3, 50, 4.0, 1),
            ia(3, 40, 4.0, 2),
            ia(3, 30, 4.0, 3),
            ia(3, 20, 4.0, 4),
            ia(3, 1, 4.0, 5),
        ];
        let settings = DataSettings {
            min_rating: None,
            min_seq_len: 3,
            min_item_count: 2,
        };
        let ds = build_dataset(&data, &settings);
        assert_eq!(ds.vocab.movie_ids(), &[1, 20, 30, 40, 50]);
        let split = split_movie_ids(&leave_one_out(&ds), &ds.vocab);
        assert_eq!(split.len(), 2);
        assert_eq!(split[&1], (vec![1, 20, 30], 40, 50));
        assert_eq!(split[&3], (vec![50, 40, 30], 20, 1));

        let liked = build_dataset(
            &data,
            &DataSettings {
                min_rating: Some(3.0),
                ..settings
            },
        );
        let split = split_movie_ids(&leave_one_out(&liked), &liked.vocab);
        assert_eq!(split[&1], (vec![1], 20, 30));
    }

    #[test]
    fn popularity_counts_training_items_only() {
        let split = vec![SplitUser {
            user_id: 1,
            train: vec![0, 2, 2],
            valid: 1,
            test: 1,
        }];
        assert_eq!(train_popularity(&split, 3), vec![1, 0, 2]);
    }
}
