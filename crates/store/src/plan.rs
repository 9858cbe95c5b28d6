//! What a batch of webhooks becomes, whatever the backend: which jobs to insert (the first of each
//! dedup key in the batch), which are duplicates of which, and each request's outcome.

use std::collections::HashMap;

use aiops_model::{EnqueueOutcome, JobId, NewJob, StoreError};

/// The webhooks of a batch: which jobs to insert, and which dedup keys they claim.
pub(crate) struct Enqueue<'a> {
    /// Jobs to insert, unless the dedup key they claim turns out to be held by another job.
    pub jobs: Vec<&'a NewJob>,
    /// Jobs whose key an earlier job of the same batch claims, with that job's id.
    same_batch: Vec<(JobId, JobId)>,
}

impl<'a> Enqueue<'a> {
    pub fn plan(jobs: &[&'a NewJob]) -> Self {
        let mut first_with_key: HashMap<&str, JobId> = HashMap::new();
        let mut plan = Self {
            jobs: Vec::with_capacity(jobs.len()),
            same_batch: Vec::new(),
        };
        for job in jobs {
            match job.dedup_key.as_deref() {
                Some(key) => match first_with_key.get(key) {
                    Some(first) => plan.same_batch.push((job.id, *first)),
                    None => {
                        first_with_key.insert(key, job.id);
                        plan.jobs.push(job);
                    }
                },
                None => plan.jobs.push(job),
            }
        }
        plan
    }

    /// The jobs that were not inserted, each with the id of the job that holds its key. `holders` is
    /// empty when every job was inserted.
    pub fn duplicates(&self, holders: &HashMap<String, JobId>) -> HashMap<JobId, JobId> {
        let mut duplicates = HashMap::new();
        for job in &self.jobs {
            let Some(key) = job.dedup_key.as_deref() else {
                continue;
            };
            if let Some(holder) = holders.get(key).filter(|h| **h != job.id) {
                duplicates.insert(job.id, *holder);
            }
        }
        // A later job of the batch with an earlier one's key duplicates whatever that one duplicates.
        for (id, first) in &self.same_batch {
            let holder = duplicates.get(first).copied().unwrap_or(*first);
            duplicates.insert(*id, holder);
        }
        duplicates
    }
}

/// Each request's answer: `QueueFull` for the ones that did not fit, else each job created or a
/// duplicate of the job that holds its key.
pub(crate) fn outcomes(
    requests: &[Vec<NewJob>],
    admitted: &[bool],
    duplicates: &HashMap<JobId, JobId>,
    backlog: u64,
) -> Vec<Result<Vec<EnqueueOutcome>, StoreError>> {
    requests
        .iter()
        .zip(admitted)
        .map(|(jobs, ok)| match ok {
            false => Err(StoreError::QueueFull(backlog)),
            true => Ok(jobs
                .iter()
                .map(|j| match duplicates.get(&j.id) {
                    Some(original) => EnqueueOutcome::Duplicate(*original),
                    None => EnqueueOutcome::Created(j.id),
                })
                .collect()),
        })
        .collect()
}

/// Which requests fit under `max_queued` given `backlog` jobs waiting, in order; the jobs of those
/// that fit; the new backlog.
pub(crate) fn admit(
    requests: &[Vec<NewJob>],
    mut backlog: u64,
    max_queued: u64,
) -> (Vec<bool>, Vec<&NewJob>, u64) {
    let admitted: Vec<bool> = requests
        .iter()
        .map(|jobs| {
            let fits = backlog + jobs.len() as u64 <= max_queued;
            if fits {
                backlog += jobs.len() as u64;
            }
            fits
        })
        .collect();
    let jobs = requests
        .iter()
        .zip(&admitted)
        .filter(|(_, ok)| **ok)
        .flat_map(|(jobs, _)| jobs)
        .collect();
    (admitted, jobs, backlog)
}
