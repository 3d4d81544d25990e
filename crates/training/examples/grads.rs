use burn::module::Module;
use burn::tensor::{Device, Distribution, Int, Tensor};
use vl_models::AlbefConfig;
use vl_models::TextInput;

fn main() {
    let device = Device::flex();
    device.seed(3);
    let config = AlbefConfig::tiny(100);
    let model = config.init(true, &device).train();
    let image = Tensor::<4>::random(
        [8, 3, 64, 64],
        Distribution::Normal(0.0, 1.0),
        &model.temp.val().device(),
    );
    let ids = Tensor::<2, Int>::random([8, 12], Distribution::Uniform(5.0, 99.0), &image.device());
    let image_embeds = model.image_embeds(image);
    let image_feat = model.image_feat(image_embeds.clone());
    let text_feat = model.text_feat(model.text_embeds(&TextInput::new(ids)));
    let sims = image_feat.matmul(text_feat.transpose()) / 0.07;
    let eye = Tensor::<2>::eye(8, &sims.device());
    let loss = vl_objectives::soft_cross_entropy(sims, eye);
    let mut grads = loss.backward();
    let norm = |name: &str, t: Tensor<2>| {
        let g = t
            .grad(&grads)
            .map(|g| g.powi_scalar(2).sum().sqrt().into_scalar::<f32>());
        println!("{name:40} grad norm {g:?}");
    };
    norm("vision_proj.weight", model.vision_proj.weight.val());
    norm("text_proj.weight", model.text_proj.weight.val());
    norm(
        "visual_encoder.blocks.3.mlp.fc2.weight",
        model.visual_encoder.blocks[3].mlp.fc2.weight.val(),
    );
    norm(
        "visual_encoder.blocks.0.attention.query",
        model.visual_encoder.blocks[0].attention.query.weight.val(),
    );
    norm(
        "visual_encoder.blocks.0.mlp.fc1.weight",
        model.visual_encoder.blocks[0].mlp.fc1.weight.val(),
    );
    let conv = model.visual_encoder.patch_embed.proj.weight.val();
    let g = conv
        .grad(&grads)
        .map(|g| g.powi_scalar(2).sum().sqrt().into_scalar::<f32>());
    println!("{:40} grad norm {g:?}", "patch_embed.proj.weight");
    norm(
        "text layer0 query",
        model.text_encoder.bert.encoder.layer[0]
            .attention
            .query
            .weight
            .val(),
    );
    let _ = &mut grads;
    // Feature diversity: mean pairwise cosine of image features.
    let f = model
        .image_feat(model.image_embeds(Tensor::<4>::random(
            [8, 3, 64, 64],
            Distribution::Normal(0.0, 1.0),
            &device,
        )))
        .valid();
    let cos = f.clone().matmul(f.transpose()).mean().into_scalar::<f32>();
    println!("mean pairwise cosine of image features: {cos:.4}");
}
