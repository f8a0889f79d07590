use burn::prelude::*;
use seremotion_trainer::{export, net::NetConfig};

#[test]
fn probe_export() {
    let device = Device::flex();
    let cfg = NetConfig::new(66, 4);
    let model = cfg.init(&device);
    let bytes = export::export_graph(&model, 66, 100).expect("export");
    std::fs::write("/tmp/probe.onnx", &bytes).unwrap();
    let x = Tensor::<3>::ones([2, 66, 37], &device);
    let y = model.valid().forward(x);
    println!("{:?}", y.into_data());
}
