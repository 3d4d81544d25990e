use burn::module::{Module, Param};
use burn::tensor::{Device, Distribution, Tensor};
use vl_models::VitConfig;

fn main() {
    let device = Device::flex();
    device.seed(5);
    let config = VitConfig {
        image_size: 16,
        patch_size: 8,
        hidden_size: 8,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 16,
        layer_norm_eps: 1e-6,
        ..VitConfig::default()
    };
    let vit = config.init(&device);
    let image = Tensor::<4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &device);
    let target = Tensor::<3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &device);
    let loss_of = |v: &vl_models::Vit, img: Tensor<4>, tgt: Tensor<3>| (v.forward(img) * tgt).sum();
    // Autodiff gradients.
    let trained = vit.clone().train();
    let ad = trained.cls_token.val().device();
    let loss = loss_of(
        &trained,
        image.clone().autodiff(),
        target.clone().autodiff(),
    );
    let grads = loss.backward();
    type Get = fn(&vl_models::Vit) -> Tensor<2>;
    let checks: Vec<(&str, Get)> = vec![
        ("blocks.0.mlp.fc1.weight", |v| {
            v.blocks[0].mlp.fc1.weight.val()
        }),
        ("blocks.0.attention.query.weight", |v| {
            v.blocks[0].attention.query.weight.val()
        }),
        ("blocks.0.attention.value.weight", |v| {
            v.blocks[0].attention.value.weight.val()
        }),
    ];
    let _ = ad;
    for (name, get) in checks {
        let g = get(&trained)
            .grad(&grads)
            .unwrap()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap();
        // Finite differences on the first 3 entries (in f64-ish via central difference).
        for idx in 0..3 {
            let eps = 1e-2f32;
            let bump = |delta: f32| {
                let mut v = vit.clone();
                let w = get(&v);
                let [r, c] = w.dims();
                let mut data = w
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .unwrap();
                data[idx] += delta;
                let t =
                    Tensor::<2>::from_data(burn::tensor::TensorData::new(data, [r, c]), &device);
                match name {
                    "blocks.0.mlp.fc1.weight" => v.blocks[0].mlp.fc1.weight = Param::from_tensor(t),
                    "blocks.0.attention.query.weight" => {
                        v.blocks[0].attention.query.weight = Param::from_tensor(t)
                    }
                    _ => v.blocks[0].attention.value.weight = Param::from_tensor(t),
                }
                loss_of(&v, image.clone(), target.clone()).into_scalar::<f32>()
            };
            let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
            println!(
                "{name}[{idx}]: autodiff {:+.5} finite-diff {:+.5}",
                g[idx], fd
            );
        }
    }
    // Input-gradient path through the patch conv: compare for the conv weight.
    let w = trained.patch_embed.proj.weight.val();
    let g = w
        .grad(&grads)
        .unwrap()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    for idx in [0usize, 5, 77] {
        let eps = 1e-2f32;
        let bump = |delta: f32| {
            let mut v = vit.clone();
            let w = v.patch_embed.proj.weight.val();
            let dims = w.dims();
            let mut data = w
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .unwrap();
            data[idx] += delta;
            v.patch_embed.proj.weight = Param::from_tensor(Tensor::<4>::from_data(
                burn::tensor::TensorData::new(data, dims),
                &device,
            ));
            loss_of(&v, image.clone(), target.clone()).into_scalar::<f32>()
        };
        let fd = (bump(eps) - bump(-eps)) / (2.0 * eps);
        println!(
            "patch_embed.proj.weight[{idx}]: autodiff {:+.5} finite-diff {:+.5}",
            g[idx], fd
        );
    }
}
