import { TextAnswerBlock, type BlockProps } from './TextAnswerBlock.tsx';

export function ExplainELI10Block({ topic, join }: BlockProps) {
  return (
    <TextAnswerBlock
      blockType="explain_eli10"
      title="Explain like I'm 10"
      description="A simple explanation, short sentences, no jargon."
      inputLabel="Topic"
      submitLabel="Explain"
      defaultInput={topic}
      maxTokens={120}
      join={join ?? null}
    />
  );
}
