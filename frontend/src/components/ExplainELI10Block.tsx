import { TextAnswerBlock, type JoinRequest } from './TextAnswerBlock.tsx';

export function ExplainELI10Block({ topic, join }: { topic: string; join?: JoinRequest | null }) {
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
