"""The run pipeline: spec -> jobs (protocols) -> executors -> runner -> store -> evaluation."""
