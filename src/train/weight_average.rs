//! An exponential moving average of the parameters over training steps (Polyak averaging).
//! Validation, and so the saved checkpoint, can use the average instead of the last step's
//! weights: the average moves less with the noise of single batches.

use candle_core::{Tensor, Var};

use crate::train::TrainError;

/// The running average of a list of parameters, updated after every optimizer step.
pub struct WeightAverage {
    decay: f64,
    updates: u64,
    averages: Vec<Tensor>,
}

impl WeightAverage {
    /// Starts the average at the parameters' current values. `decay` is the weight of the old
    /// average at each update, in `(0, 1)`.
    pub fn new(vars: &[Var], decay: f64) -> Result<Self, TrainError> {
        if !(decay > 0.0 && decay < 1.0) {
            return Err(TrainError::Invalid(format!(
                "the weight-average decay must be in (0, 1), not {decay}"
            )));
        }
        let averages = vars
            .iter()
            .map(|v| v.as_tensor().detach().copy())
            .collect::<candle_core::Result<_>>()?;
        Ok(Self {
            decay,
            updates: 0,
            averages,
        })
    }

    /// Folds the parameters' current values into the average. The decay ramps up over the
    /// first updates (`(1 + n) / (10 + n)`, capped at `decay`), so that the starting point
    /// does not linger in the average of a short run.
    pub fn update(&mut self, vars: &[Var]) -> Result<(), TrainError> {
        let n = self.updates as f64;
        let decay = self.decay.min((1.0 + n) / (10.0 + n));
        for (average, var) in self.averages.iter_mut().zip(vars) {
            // Detached: an op on the variable itself would record a backprop graph, and each
            // average would hold on to every earlier one.
            *average = ((&*average * decay)? + (var.as_tensor().detach() * (1.0 - decay))?)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// Writes the average into the parameters and returns what they held, for [`Self::restore`].
    pub fn swap_in(&self, vars: &[Var]) -> Result<Vec<Tensor>, TrainError> {
        let mut held = Vec::with_capacity(vars.len());
        for (average, var) in self.averages.iter().zip(vars) {
            held.push(var.as_tensor().detach().copy()?);
            var.set(average)?;
        }
        Ok(held)
    }

    /// Puts back the values [`Self::swap_in`] returned.
    pub fn restore(vars: &[Var], held: &[Tensor]) -> Result<(), TrainError> {
        for (var, value) in vars.iter().zip(held) {
            var.set(value)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn var(values: &[f32]) -> Var {
        Var::new(values, &Device::Cpu).expect("var")
    }

    fn values(t: &Tensor) -> Vec<f32> {
        t.to_vec1().expect("values")
    }

    #[test]
    fn the_average_follows_the_decay_after_the_ramp() {
        let vars = [var(&[0.0, 10.0])];
        let mut avg = WeightAverage::new(&vars, 0.5).expect("average");
        // First update: decay min(0.5, 1/10) = 0.1.
        vars[0]
            .set(&Tensor::new(&[10.0f32, 0.0], &Device::Cpu).expect("t"))
            .expect("set");
        avg.update(&vars).expect("update");
        let a = values(&avg.averages[0]);
        assert!(
            (a[0] - 9.0).abs() < 1e-5 && (a[1] - 1.0).abs() < 1e-5,
            "{a:?}"
        );
        // The ramp reaches 0.5 at the ninth update (n = 8): hold the value until then, and
        // check that update against the plain decay.
        for _ in 1..8 {
            avg.update(&vars).expect("update");
        }
        let before = values(&avg.averages[0]);
        vars[0]
            .set(&Tensor::new(&[0.0f32, 0.0], &Device::Cpu).expect("t"))
            .expect("set");
        avg.update(&vars).expect("update");
        let after = values(&avg.averages[0]);
        for (b, a) in before.iter().zip(&after) {
            assert!((a - b * 0.5).abs() < 1e-5, "{before:?} -> {after:?}");
        }
    }

    #[test]
    fn the_average_records_no_backprop_graph() {
        // An average built from the variables' tracked tensors would chain every update to the
        // one before and keep them all alive (a run's memory grew by gigabytes a minute).
        let vars = [var(&[1.0, 2.0])];
        let mut avg = WeightAverage::new(&vars, 0.9).expect("average");
        assert!(!avg.averages[0].track_op());
        avg.update(&vars).expect("update");
        assert!(!avg.averages[0].track_op());
        let held = avg.swap_in(&vars).expect("swap");
        assert!(!held[0].track_op());
    }

    #[test]
    fn swapping_in_and_restoring_round_trips_the_parameters() {
        let vars = [var(&[1.0, 2.0]), var(&[3.0])];
        let mut avg = WeightAverage::new(&vars, 0.9).expect("average");
        vars[0]
            .set(&Tensor::new(&[5.0f32, 6.0], &Device::Cpu).expect("t"))
            .expect("set");
        avg.update(&vars).expect("update");
        let held = avg.swap_in(&vars).expect("swap");
        assert_eq!(values(vars[0].as_tensor()), values(&avg.averages[0]));
        assert_ne!(values(vars[0].as_tensor()), vec![5.0, 6.0]);
        WeightAverage::restore(&vars, &held).expect("restore");
        assert_eq!(values(vars[0].as_tensor()), vec![5.0, 6.0]);
        assert_eq!(values(vars[1].as_tensor()), vec![3.0]);
    }

    #[test]
    fn decays_outside_the_open_unit_interval_are_refused() {
        let vars = [var(&[1.0])];
        for decay in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(WeightAverage::new(&vars, decay).is_err(), "{decay}");
        }
    }
}
