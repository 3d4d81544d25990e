//! How two scenes differ, in the terms a caption uses: what a retrieval
//! miss confused the right image with. A model that retrieves an image with
//! the same colours at the same sizes but other shapes has not read shape;
//! one that retrieves the same objects elsewhere has not read position (or
//! met a caption that names none, which both images fit).

use serde::Serialize;

use super::Scene;

/// The one way two scenes differ, or [`Difference::Several`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// The same objects in the same grid regions: every caption fits both.
    None,
    /// The same objects (shape, colour, size), some in other regions.
    Positions,
    /// The same colours at the same sizes, some with other shapes.
    Shapes,
    /// The same shapes in the same colours, some at the other size.
    Sizes,
    /// The same shapes at the same sizes, some in other colours.
    Colours,
    /// Another number of objects.
    Count,
    /// More than one attribute differs.
    Several,
}

impl Difference {
    /// A short name for tables.
    pub fn name(self) -> &'static str {
        match self {
            Difference::None => "nothing (same regions)",
            Difference::Positions => "positions only",
            Difference::Shapes => "shapes only",
            Difference::Sizes => "sizes only",
            Difference::Colours => "colours only",
            Difference::Count => "object count",
            Difference::Several => "several attributes",
        }
    }
}

/// How `b` differs from `a`, comparing their objects as multisets (drawing
/// order does not matter).
pub fn difference(a: &Scene, b: &Scene) -> Difference {
    if a.objects.len() != b.objects.len() {
        return Difference::Count;
    }
    // Which attributes must match: shape, colour, size, region.
    let same = |kept: [bool; 4]| codes(a, kept) == codes(b, kept);
    if same([true; 4]) {
        Difference::None
    } else if same([true, true, true, false]) {
        Difference::Positions
    } else if same([false, true, true, false]) {
        Difference::Shapes
    } else if same([true, true, false, false]) {
        Difference::Sizes
    } else if same([true, false, true, false]) {
        Difference::Colours
    } else {
        Difference::Several
    }
}

/// The objects' attributes as sorted codes, those not `kept` blanked:
/// equal lists mean equal multisets of the kept attribute combinations.
fn codes(scene: &Scene, kept: [bool; 4]) -> Vec<[u8; 5]> {
    let keep = [kept[0], kept[1], kept[2], kept[3], kept[3]];
    let mut codes: Vec<[u8; 5]> = scene
        .objects
        .iter()
        .map(|o| {
            let all = [
                o.shape as u8,
                o.colour as u8,
                o.size as u8,
                o.region.column,
                o.region.row,
            ];
            std::array::from_fn(|i| if keep[i] { all[i] } else { u8::MAX })
        })
        .collect();
    codes.sort_unstable();
    codes
}

#[cfg(test)]
mod tests {
    use super::super::{Colour, Object, Region, Shape, Size};
    use super::*;

    fn scene(objects: &[(Shape, Colour, Size, u8)]) -> Scene {
        Scene {
            id: 0,
            image: String::new(),
            split: "test".into(),
            objects: objects
                .iter()
                .map(|&(shape, colour, size, column)| Object {
                    shape,
                    colour,
                    size,
                    region: Region { column, row: 1 },
                    bbox: [0.0; 4],
                })
                .collect(),
            background_seed: 0,
        }
    }

    #[test]
    fn each_kind_of_difference_is_named() {
        use Colour::{Blue, Red};
        use Shape::{Circle, Square};
        use Size::{Large, Small};
        let a = scene(&[(Circle, Red, Small, 0), (Square, Blue, Large, 2)]);
        // Drawing order does not matter.
        let reordered = scene(&[(Square, Blue, Large, 2), (Circle, Red, Small, 0)]);
        assert_eq!(difference(&a, &reordered), Difference::None);
        let moved = scene(&[(Circle, Red, Small, 1), (Square, Blue, Large, 2)]);
        assert_eq!(difference(&a, &moved), Difference::Positions);
        // The red circle became a red square (and moved: shape is the news).
        let reshaped = scene(&[(Square, Red, Small, 1), (Square, Blue, Large, 2)]);
        assert_eq!(difference(&a, &reshaped), Difference::Shapes);
        let resized = scene(&[(Circle, Red, Large, 0), (Square, Blue, Large, 2)]);
        assert_eq!(difference(&a, &resized), Difference::Sizes);
        let recoloured = scene(&[(Circle, Blue, Small, 0), (Square, Blue, Large, 2)]);
        assert_eq!(difference(&a, &recoloured), Difference::Colours);
        let fewer = scene(&[(Circle, Red, Small, 0)]);
        assert_eq!(difference(&a, &fewer), Difference::Count);
        let both = scene(&[(Square, Blue, Small, 0), (Square, Blue, Large, 2)]);
        assert_eq!(difference(&a, &both), Difference::Several);
        // Colours bound to the other shapes: the same shapes at the same
        // sizes, other colours on them.
        let swapped = scene(&[(Circle, Blue, Small, 0), (Square, Red, Large, 2)]);
        assert_eq!(difference(&a, &swapped), Difference::Colours);
        // Shapes swapped between the sizes: the colour–size pairs remain.
        let exchanged = scene(&[(Square, Red, Small, 0), (Circle, Blue, Large, 2)]);
        assert_eq!(difference(&a, &exchanged), Difference::Shapes);
    }
}
