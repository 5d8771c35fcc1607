import { TextAnswerBlock, type BlockProps } from './TextAnswerBlock.tsx';

export function AskQuestionBlock({ topic, join }: BlockProps) {
  return (
    <TextAnswerBlock
      blockType="ask_question"
      title="Ask a question"
      description={`Anything about ${topic}; the answer streams in as it is written.`}
      inputLabel="Your question"
      submitLabel="Ask"
      defaultInput={`How does ${topic.toLowerCase()} turn light into food?`}
      maxTokens={160}
      join={join ?? null}
    />
  );
}
