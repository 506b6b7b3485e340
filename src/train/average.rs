//! An exponential moving average of the weights (Polyak averaging), kept beside the trained
//! weights: validation and the saved checkpoint can use the average, which moves less from
//! step to step than the weights themselves.

use candle_core::{Result, Tensor, Var};

/// The running average of a set of variables.
pub struct WeightAverage {
    decay: f64,
    vars: Vec<Var>,
    shadow: Vec<Tensor>,
    updates: usize,
    swapped: bool,
}

impl WeightAverage {
    /// Starts the average at the variables' current values. `decay` is the weight of the old
    /// average at each update, in `(0, 1)`.
    pub fn new(vars: &[Var], decay: f64) -> Result<Self> {
        let shadow = vars
            .iter()
            .map(|v| v.as_tensor().copy())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            decay,
            vars: vars.to_vec(),
            shadow,
            updates: 0,
            swapped: false,
        })
    }

    /// The decay used at the next update: `min(decay, (1 + n) / (10 + n))` after `n` updates,
    /// so that the first updates are not averaged with the random initialisation for long.
    pub fn current_decay(&self) -> f64 {
        let n = self.updates as f64;
        self.decay.min((1.0 + n) / (10.0 + n))
    }

    /// Folds the variables' current values into the average (call after every optimizer step).
    pub fn update(&mut self) -> Result<()> {
        let d = self.current_decay();
        for (v, s) in self.vars.iter().zip(self.shadow.iter_mut()) {
            *s = (s.affine(d, 0.0)? + v.as_tensor().affine(1.0 - d, 0.0)?)?;
        }
        self.updates += 1;
        Ok(())
    }

    /// Exchanges the variables' values with the average: call once to evaluate or save the
    /// average, and again to go back to the trained weights.
    pub fn swap(&mut self) -> Result<()> {
        for (v, s) in self.vars.iter().zip(self.shadow.iter_mut()) {
            let current = v.as_tensor().copy()?;
            v.set(s)?;
            *s = current;
        }
        self.swapped = !self.swapped;
        Ok(())
    }

    /// Whether the variables now hold the average.
    pub fn is_swapped(&self) -> bool {
        self.swapped
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::WeightAverage;

    fn values(v: &Var) -> Vec<f32> {
        v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()
    }

    #[test]
    fn the_average_follows_the_decay_and_swaps_back() {
        let v = Var::from_tensor(&Tensor::new(&[0f32, 10.0], &Device::Cpu).unwrap()).unwrap();
        let mut avg = WeightAverage::new(std::slice::from_ref(&v), 0.5).unwrap();
        // First update: decay min(0.5, 1/10) = 0.1.
        v.set(&Tensor::new(&[10f32, 0.0], &Device::Cpu).unwrap())
            .unwrap();
        avg.update().unwrap();
        // Second: min(0.5, 2/11).
        v.set(&Tensor::new(&[20f32, 0.0], &Device::Cpu).unwrap())
            .unwrap();
        avg.update().unwrap();
        let first = [0.1 * 0.0 + 0.9 * 10.0, 0.1 * 10.0 + 0.9 * 0.0];
        let d = 2.0 / 11.0;
        let expected = [d * first[0] + (1.0 - d) * 20.0, d * first[1]];
        avg.swap().unwrap();
        assert!(avg.is_swapped());
        for (got, want) in values(&v).iter().zip(expected) {
            assert!((f64::from(*got) - want).abs() < 1e-5, "{got} vs {want}");
        }
        avg.swap().unwrap();
        assert!(!avg.is_swapped());
        assert_eq!(values(&v), vec![20.0, 0.0]);
        // Later updates use the configured decay.
        for _ in 0..20 {
            avg.update().unwrap();
        }
        assert!((avg.current_decay() - 0.5).abs() < 1e-12);
    }
}
