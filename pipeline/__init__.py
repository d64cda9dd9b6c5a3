"""Build pipeline: recipe -> AWQ -> LoRA (Olive) -> int4 ONNX with LoRA slots -> .onnx_adapter."""
